"""A Prometheus text endpoint for the scheduler (``--metrics-port``), with no extra dependency.

Serves ``GET /metrics`` from a tiny asyncio HTTP responder on the scheduler's event loop:
jobs assigned / completed / lost, workers connected, trials, results, and the decision latency
(quantiles over the recent decisions).
"""

from __future__ import annotations

import asyncio
from typing import Any


def render(service: Any) -> str:
    st = service.driver.status()
    m = service.metrics
    lat = sorted(service.decision_seconds)

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    lines = [
        "# HELP ash_jobs_assigned_total Jobs handed to workers.",
        "# TYPE ash_jobs_assigned_total counter",
        f"ash_jobs_assigned_total {m['assigned']}",
        "# HELP ash_jobs_completed_total Results received.",
        "# TYPE ash_jobs_completed_total counter",
        f"ash_jobs_completed_total {m['completed']}",
        "# HELP ash_jobs_lost_total Jobs whose worker vanished (broken stream, lease, release).",
        "# TYPE ash_jobs_lost_total counter",
        f"ash_jobs_lost_total {m['lost']}",
        "# HELP ash_workers_connected Worker sessions open now.",
        "# TYPE ash_workers_connected gauge",
        f"ash_workers_connected {len(service.sessions)}",
        "# HELP ash_trials_total Trials started.",
        "# TYPE ash_trials_total counter",
        f"ash_trials_total {st.trials}",
        "# HELP ash_jobs_running Jobs in flight.",
        "# TYPE ash_jobs_running gauge",
        f"ash_jobs_running {st.running}",
        "# HELP ash_decision_latency_seconds Time the core takes to decide a job.",
        "# TYPE ash_decision_latency_seconds summary",
        f'ash_decision_latency_seconds{{quantile="0.5"}} {q(0.5):.9f}',
        f'ash_decision_latency_seconds{{quantile="0.99"}} {q(0.99):.9f}',
        f"ash_decision_latency_seconds_count {len(lat)}",
    ]
    return "\n".join(lines) + "\n"


async def start_metrics(service: Any, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)).strip():
                pass  # headers
            if request.split(b" ")[1:2] == [b"/metrics"]:
                body = render(service).encode()
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body = b"not found: try /metrics\n"
                head = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(
                head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"ash-scheduler: metrics on http://{host}:{bound}/metrics", flush=True)
    return server
