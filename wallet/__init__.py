"""The wallet: encrypted keystore and the `kwh-wallet` command line, talking to a node over HTTP only."""
