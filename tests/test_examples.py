"""Every script in examples/ runs and says what it should; BackgroundWorker as a class."""

from __future__ import annotations

import re
from typing import Any

import pytest

from examples.ports_example import BackgroundWorker, Photo, ResourceError, User
from examples.typicode_server import COUNTS, TypicodeServer

from .support import ROOT, run, run_python


def run_example(name: str, ray_runtime: dict[str, Any], *arguments: str) -> str:
    code = (
        "import runpy, sys; "
        f"sys.argv = [{name!r}, *{list(arguments)!r}]; "
        f"runpy.run_path('examples/{name}', run_name='__main__')"
    )
    return run_python(code, env={"RAY_ADDRESS": ray_runtime["gcs_address"]}, timeout=120)


@pytest.mark.parametrize(
    "name", ["simple_worker_isolate.py", "simple_isolate_closure.py", "send_and_receive.py"]
)
def test_json_key_examples(name: str, ray_runtime: dict[str, str]) -> None:
    assert run_example(name, ray_runtime).strip() == "Number of JSON keys: 7"


def test_long_running_isolate(ray_runtime: dict[str, str]) -> None:
    assert run_example("long_running_isolate.py", ray_runtime).splitlines() == [
        "with_keys.json: 7 keys",
        "more_keys.json: 3 keys",
        "even_more_keys.json: 10 keys",
        "The worker has shut down",
    ]


def test_ports_example_with_its_own_server(ray_runtime: dict[str, str]) -> None:
    lines = run_example("ports_example.py", ray_runtime).splitlines()
    assert lines == [f"Received {count} {name}" for name, count in COUNTS.items()]


def test_ports_example_with_base_url(ray_runtime: dict[str, str]) -> None:
    with TypicodeServer() as server:
        output = run_example("ports_example.py", ray_runtime, "--base-url", server.base_url)
    assert "Received 5000 photos" in output


def test_worker_photos_calls_streams_and_catches_the_workers_error(
    ray_runtime: dict[str, str],
) -> None:
    lines = run_example("worker_photos.py", ray_runtime).splitlines()
    assert lines[:5] == [f"Received {count} {name}" for name, count in COUNTS.items()]
    assert lines[5].startswith("Album 1 has 50 photos, the first titled ")
    assert lines[6] == "Fetching posts failed: no posts here (HTTP 404)"


def test_large_json_keeps_the_main_loop_ticking(ray_runtime: dict[str, str]) -> None:
    output = run_example("large_json.py", ray_runtime)
    isolate = re.search(r"In an isolate: .* heartbeats during the parse: (\d+)", output)
    main = re.search(r"On the main loop: .* heartbeats during the parse: (\d+)", output)
    assert isolate and main, output
    assert int(main.group(1)) <= 1 < int(isolate.group(1))


def test_process_photos_reads_results_without_copies(ray_runtime: dict[str, str]) -> None:
    output = run_example("process_photos.py", ray_runtime)
    assert "Processed 24 photos" in output
    assert "read-only views): 24/24" in output
    assert re.search(r"Throughput: [\d.]+ photos/s", output)


def test_pool_word_count_matches_a_count_made_in_one_process(
    ray_runtime: dict[str, str],
) -> None:
    output = run_example("pool_word_count.py", ray_runtime)
    files = re.search(r"Counted [\d,]+ words in (\d+) files", output)
    assert files and int(files.group(1)) > 50, output
    assert f"Tasks completed by the pool: {files.group(1)}, failed: 0" in output
    assert "Same as counting in this process: True" in output


def test_stream_lines_streams_every_record_and_stops_early(
    ray_runtime: dict[str, str],
) -> None:
    output = run_example("stream_lines.py", ray_runtime)
    assert "Streamed 200,000 records" in output
    stopped = re.search(r"First error at ([\d.]+) s; the parser stopped after (\d+) lines", output)
    assert stopped, output
    line = round(float(stopped.group(1)) * 10) + 1  # line i says i / 10 seconds
    # It read the line with the error and at most its buffer (16) ahead of the reader.
    assert line <= int(stopped.group(2)) <= line + 16 + 1, output


def test_cluster_ring_spreads_over_every_node(ray_runtime: dict[str, Any]) -> None:
    output = run_example("cluster_ring.py", ray_runtime)
    for node in ray_runtime["nodes"].values():
        assert output.count(f"runs on node {node[:12]}") == 1, output
    assert "3 laps (9 hops) round 3 isolates on 3 node(s)" in output


def test_examples_folder_is_where_the_demo_looks() -> None:
    from rayisolates._demo import EXAMPLES, examples_folder

    assert examples_folder() == ROOT / "examples"
    assert sorted(EXAMPLES) == sorted(
        path.name
        for path in (ROOT / "examples").glob("*.py")
        if path.name not in {"__init__.py", "typicode_server.py"}
    )


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


def test_background_worker_streams_every_resource() -> None:
    async def main() -> dict[str, list[Any]]:
        with TypicodeServer() as server:
            worker = await BackgroundWorker.start(server.base_url)
            try:
                streams = {
                    "photos": worker.photos(),
                    "albums": worker.albums(),
                    "comments": worker.comments(),
                    "todos": worker.todos(),
                    "users": worker.users(),
                }
                results = {name: await collect(stream) for name, stream in streams.items()}
            finally:
                await worker.dispose()
        return results

    results = run(main())
    assert {name: len(items) for name, items in results.items()} == COUNTS
    assert results["photos"][0] == Photo(
        1,
        1,
        results["photos"][0].title,
        results["photos"][0].url,
        results["photos"][0].thumbnail_url,
    )
    assert all(isinstance(user, User) for user in results["users"])
    assert [photo.id for photo in results["photos"]] == list(range(1, 5001))


def test_background_worker_reports_unknown_resources_and_http_errors() -> None:
    async def main() -> list[str]:
        with TypicodeServer(failing={"todos"}) as server:
            worker = await BackgroundWorker.start(server.base_url)
            errors = []
            for resource in ("posts", "todos"):
                with pytest.raises(ResourceError) as caught:
                    await collect(worker.stream(resource))
                errors.append(str(caught.value))
            still_works = len(await collect(worker.users()))
            await worker.dispose()
        return [*errors, str(still_works)]

    unknown, failed, still_works = run(main())
    assert "unknown resource 'posts'" in unknown
    assert "500" in failed
    assert still_works == "10"


def test_dispose_with_work_in_flight_fails_the_streams() -> None:
    async def main() -> list[Any]:
        with TypicodeServer() as server:
            worker = await BackgroundWorker.start(server.base_url)
            in_flight = worker.photos()
            first = await anext(in_flight)
            await worker.dispose()
            with pytest.raises(ResourceError, match="disposed") as caught:
                await collect(in_flight)
            with pytest.raises(ResourceError, match="disposed"):
                worker.albums()
            await worker.dispose()  # idempotent
        return [first.id, str(caught.value)]

    assert run(main())[0] == 1
