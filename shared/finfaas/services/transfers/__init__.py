"""Transfers: customer money transfers run as durable sagas (model, errors, ports, api, service)."""
