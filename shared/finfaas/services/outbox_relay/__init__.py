"""The outbox relay capability: publish what producers wrote to their outbox, then seal its audit."""
