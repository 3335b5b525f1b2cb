"""The API-key authorizer: callers' API keys, in ``x-api-key`` or as an OpenAI-style bearer token."""
