"""The protocols the service speaks, each a thin adapter over the one request lifecycle
(``service.lifecycle``): it reads its wire format into texts and writes the engine's answer back. No
adapter imports another."""
