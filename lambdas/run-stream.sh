#!/bin/sh
# The streaming router's handler (lambdas/router/web_adapter.py). Lambda Web Adapter's wrapper
# (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap) runs this instead of the Python runtime's own client; the adapter,
# a Lambda extension, forwards each invocation to the server it starts on 127.0.0.1:$AWS_LWA_PORT.
# The import path is the managed runtime's: the function's code, the Powertools layer, the runtime's boto3.
PYTHONPATH="${LAMBDA_TASK_ROOT}:/opt/python:${LAMBDA_RUNTIME_DIR}${PYTHONPATH:+:$PYTHONPATH}" \
    exec python3 -m router.web_adapter
