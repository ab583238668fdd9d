"""The AWS runtime: API Gateway, Step Functions, SNS, Lambda and DynamoDB.

The Lambda handlers in `ordercast.aws.handlers` are thin shells over the same
core the embedded runtime runs: `ordercast.lifecycle` decides, `ordercast.wire`
writes frames, `ordercast.auth` checks tokens. `asl` generates the state
machine from the lifecycle table; `store` keeps orders and events in
DynamoDB; `fanout` delivers events to connections through the Management API.
"""
