"""The session bridge: API Gateway WebSocket integration endpoints to novakit.s2s sessions."""
