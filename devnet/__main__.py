"""`python -m devnet` is `kwh-devnet`."""
from .cli import main

main()
