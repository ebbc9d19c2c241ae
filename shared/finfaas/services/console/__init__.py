"""The operator console: server-rendered pages over the other functions' APIs, with the operator's token."""
