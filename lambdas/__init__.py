"""Runtime side: code that runs in AWS Lambda. Never imports aws_cdk."""
