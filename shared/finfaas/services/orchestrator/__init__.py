"""The orchestrator function's HTTP face: bodies, views, the error table (the engine: workflow/)."""
