"""The async I/O shell around the pure core: talking to NATS."""
