"""The PostgreSQL backend of a pooled deployment: offerhub.postgresql.base."""
