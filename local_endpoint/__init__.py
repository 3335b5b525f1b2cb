"""Local mode: the router behind an HTTP -> API Gateway event adapter, and a Bedrock simulator."""
