"""A new stack's first gradual rollout: instances outside its share still route, on the bootstrap policy."""

from __future__ import annotations

import io
import json
import shutil

import botocore.session
from botocore.response import StreamingBody
from botocore.stub import Stubber

from lambdas.router import handler, policy_store
from lambdas.router.bedrock import BedrockGateway
from lambdas.router.executor import ModelReply
from lambdas.router.policy import DEFAULT_POLICY_PATH, document_digest
from local_endpoint.server import LocalLambdaContext

from .conftest import api_event


def test_router_built_from_the_environment_serves_the_bootstrap_while_appconfig_is_empty(tmp_path, monkeypatch):
    # Given the function's environment as the construct sets it, and the bootstrap file in the asset
    text = DEFAULT_POLICY_PATH.read_text()
    shutil.copy(DEFAULT_POLICY_PATH, tmp_path / policy_store.BOOTSTRAP_POLICY_FILENAME)
    for name, value in {
        "APPCONFIG_APPLICATION": "app",
        "APPCONFIG_ENVIRONMENT": "prod",
        "APPCONFIG_PROFILE": "routing-policy",
        policy_store.BOOTSTRAP_POLICY_ENV: policy_store.BOOTSTRAP_POLICY_FILENAME,
        "ROUTER_POLICY_SHA256": document_digest(text),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ROUTER_POLICY_FILE", raising=False)
    monkeypatch.setattr(handler, "ASSET_ROOT", tmp_path)
    # And AppConfig answering empty content (this instance is outside the rollout's share)
    client = botocore.session.get_session().create_client(
        "appconfigdata", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    stub.add_response("start_configuration_session", {"InitialConfigurationToken": "t1"})
    stub.add_response(
        "get_latest_configuration",
        {"NextPollConfigurationToken": "t2", "Configuration": StreamingBody(io.BytesIO(b""), 0)},
    )
    real = handler.appconfig_fetcher
    monkeypatch.setattr(handler, "appconfig_fetcher", lambda **kwargs: real(**kwargs, client=client))
    # And Bedrock answering /health's probe (this test is about the policy, not about reaching Bedrock)
    probed = []

    def converse(self, call, timeout_s, **request):
        probed.append(call.model.key)
        return ModelReply(text="ok", input_tokens=7, output_tokens=1, stop_reason="max_tokens")

    monkeypatch.setattr(BedrockGateway, "converse", converse)
    handler.configure(None)
    try:
        with stub:
            # When the health check and a request arrive
            result = handler.lambda_handler(api_event("GET", "/health"), LocalLambdaContext("r"))
        # Then the router is healthy on the synth-validated policy, without a warning
        body = json.loads(result["body"])
        assert result["statusCode"] == 200, body
        assert body["policy_version"] == json.loads(text)["policy_version"]
        assert "policy_warning" not in body
        assert handler.service().policies.source == "bootstrap"
        assert probed == ["nova-micro"]  # the policy's cheapest model, once
    finally:
        handler.configure(None)
