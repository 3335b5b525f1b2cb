"""The ``routed-bedrock`` command line: checks for a routing policy before it is deployed.

Runtime side only (the policy schema and botocore): importing it never imports aws_cdk.
"""
