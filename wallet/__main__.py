"""`python -m wallet` is `kwh-wallet`."""
from wallet.cli import run

if __name__ == "__main__":
    run()
