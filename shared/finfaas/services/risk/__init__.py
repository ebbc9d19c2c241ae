"""The risk capability: explainable assessments of transfers, and the block lists."""
