"""What makes the HTTP service safe to put on the internet (issue 16).

- `tokens`: API bearer tokens (hash only, scopes read / steer / launch / admin);
- `api_auth`: the FastAPI dependencies that require a token with a scope, and the docs guard;
- `audit`: the append-only audit log and the `Actor` every change is recorded under;
- `passwords`, `throttle`: the password policy, argon2 off the event loop, login throttling;
- `sso`: optional OpenID Connect single sign-on for the console;
- `exposure`: refusing to start when reachable from outside with a missing or demo secret;
- `limits`: allowed hosts, header checks, body limits (chunked too), JSON depth, security headers;
- `overload`: bounded concurrency per kind of request, 503 + Retry-After instead of stalling.

Which routes are public, and why, is said once: `api_auth.PUBLIC_ROUTES`.
"""
