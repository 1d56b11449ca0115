"""The hub: broker, call desk, device registry and HTTP API on the restaurant's Raspberry Pi."""
