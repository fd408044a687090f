"""The demo app, as in Docker's tutorial ("friendlyhello"): a greeting, the container's
hostname and a visit counter kept in Redis, which the page goes on answering without.

It runs inside the demo/web image, on Debian's python3-flask and python3-redis. Settings come
from the environment: NAME (who is greeted), REDIS_HOST (default "redis"), PORT (default 80).
"""

from __future__ import annotations

import html
import os
import socket

from flask import Flask  # type: ignore[import-not-found, unused-ignore]
from redis import Redis  # type: ignore[import-not-found, unused-ignore]
from redis.exceptions import (  # type: ignore[import-not-found, unused-ignore]
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (  # type: ignore[import-not-found, unused-ignore]
    TimeoutError as RedisTimeoutError,
)

# Short timeouts: an unreachable Redis costs a visitor a second, not a hung page.
redis = Redis(
    host=os.environ.get("REDIS_HOST", "redis"),
    port=6379,
    socket_connect_timeout=1,
    socket_timeout=1,
)
app = Flask(__name__)


def hello() -> str:
    try:
        visits = str(redis.incr("counter"))
    except (RedisConnectionError, RedisTimeoutError):
        visits = "<i>cannot connect to Redis, counter disabled</i>"
    name = html.escape(os.environ.get("NAME", "World"))
    hostname = html.escape(socket.gethostname())
    return f"<h3>Hello {name}!</h3><b>Hostname:</b> {hostname}<br/><b>Visits:</b> {visits}"


app.add_url_rule("/", view_func=hello)

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "80")), threaded=True)
