"""The serving path: configuration, processes, front-ends, the resolution engine, metrics."""
