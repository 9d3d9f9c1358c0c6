"""Local multi-node network: genesis and keys (genesis.py), simulated smart meters (meters.py, profiles.py,
simulator.py, tamper.py), market agents (market.py), node processes (nodes.py), the `kwh-devnet` CLI."""
