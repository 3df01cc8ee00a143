"""Where the order lifecycle's SQL statements and Celery tasks go (a profiling aid, not a test).

Runs run.bench_order_lifecycle on its own database (BENCH_DATABASE_URL, reset) and groups the
statements sent on this thread's connection by the code that sent them: the first frame of
the project's own code (outside Django and the virtualenv) that is not this probe, and the
tasks by name. Usage (BENCH_PORT of your own):

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/offerhub_x_bench BENCH_PORT=8931 \\
        .venv/bin/python tests/benchmarks/lifecycle_profile.py [orders] [--sql]

`--sql` also prints the distinct statements of each place (first 160 characters).
"""

import os
import re
import sys
import traceback
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks import run  # noqa: E402  (it sets the environment before Django loads)

SAVEPOINT_NAME = re.compile(r'"s\d+_x\d+"')
SKIPPED_PARTS = ("/.venv/", "/site-packages/", "/tests/benchmarks/")


def _sender() -> str:
    """file:line function of the first frame in the project's code that sent the statement."""
    for frame in reversed(traceback.extract_stack()[:-3]):
        path = frame.filename
        if path.startswith(str(ROOT)) and not any(part in path for part in SKIPPED_PARTS):
            return f"{os.path.relpath(path, ROOT)}:{frame.lineno} {frame.name}"
    return "?"


_running_tasks: list[str] = []


def profile(orders_count: int) -> dict:
    from celery.signals import task_postrun, task_prerun
    from django.db import connection

    by_place: Counter = Counter()
    by_task: Counter = Counter()
    statements_of: defaultdict = defaultdict(Counter)
    by_task_name: Counter = Counter()

    def on_statement(execute, sql, params, many, context):
        place = _sender()
        by_place[place] += 1
        statements_of[place][SAVEPOINT_NAME.sub('"s"', " ".join(sql.split()))[:160]] += 1
        by_task[_running_tasks[-1] if _running_tasks else "(no task)"] += 1
        return execute(sql, params, many, context)

    def on_prerun(sender=None, **kwargs):
        _running_tasks.append(sender.name)
        by_task_name[sender.name] += 1

    def on_postrun(sender=None, **kwargs):
        _running_tasks.pop()

    counting = run.counting_tasks_and_statements

    def counting_with_places():
        """The lifecycle's own counters, and ours from the same moment (not the setup's)."""
        task_prerun.connect(on_prerun)
        task_postrun.connect(on_postrun)
        wrapper = connection.execute_wrapper(on_statement)
        wrapper.__enter__()
        tasks, statements = counting()

        def stop_statements():
            count = statements.stop()
            wrapper.__exit__(None, None, None)
            task_prerun.disconnect(on_prerun)
            task_postrun.disconnect(on_postrun)
            return count

        return tasks, run.Counter(stop_statements)

    run.counting_tasks_and_statements = counting_with_places
    try:
        result = run.bench_order_lifecycle(orders_count=orders_count)
    finally:
        run.counting_tasks_and_statements = counting
    return {
        "result": result,
        "by_place": by_place,
        "by_task": by_task,
        "tasks": by_task_name,
        "statements_of": statements_of,
    }


def main() -> None:
    orders_count = int(next((a for a in sys.argv[1:] if a.isdigit()), "5"))
    show_sql = "--sql" in sys.argv
    run.reset_database()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    settings.SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 10**9
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    run.serve_sandbox()
    from payments.wallets import platform_bootstrap

    platform_bootstrap()
    found = profile(orders_count)
    result, n = found["result"], orders_count
    print(
        f"per lifecycle: {result['statements']:.1f} statements, {result['all_tasks']:.1f} tasks "
        f"({result['tasks']:.1f} dispatch), {result['events']:.1f} events"
    )
    print("\ntasks per lifecycle:")
    for name, count in found["tasks"].most_common():
        print(f"  {count / n:6.1f}  {name}")
    print("\nstatements per lifecycle, by the task running them:")
    for name, count in found["by_task"].most_common():
        print(f"  {count / n:6.1f}  {name}")
    print("\nstatements per lifecycle, by sender:")
    by_file: Counter = Counter()
    for place, count in found["by_place"].items():
        by_file[place.split(":")[0]] += count
    for path, count in by_file.most_common():
        print(f"  {count / n:6.1f}  {path}")
    print()
    for place, count in found["by_place"].most_common():
        print(f"  {count / n:6.1f}  {place}")
        if show_sql:
            for sql, times in found["statements_of"][place].most_common():
                print(f"            {times / n:5.1f}  {sql}")


if __name__ == "__main__":
    main()
