"""A book of 100,000 companies and 300,000 contacts, imported from HubSpot exports (issue 15).

Generates the two exports in HubSpot's format, with the quirks of real ones (every value
quoted, money typed by hand in several currencies and styles, non-ASCII names, `;`-joined
company ids of contacts of two companies, line breaks inside quoted descriptions, missing
and unknown owners, contacts without e-mail, a few invalid addresses), into a temp dir; starts
a private PostgreSQL (bench/stack.py); imports them with `--apply` through the product's
importer, as `csplay import hubspot` does; prints wall time, rows/s and the process's RSS
(sampled every second, and the kernel's peak), then imports the same files again (nothing
changes: the re-import figure). The figures are appended to bench/RESULTS.md.

    .venv/bin/python bench/import_100k.py [--companies 100000] [--contacts-per-company 3] [--no-results]

Goal: 100,000 accounts with 300,000 contacts in under 2 minutes with flat memory.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.stack import machine_cpu, prepare_database, proc_status, run_bench, say, start_postgres  # noqa: E402
from activities.db import create_pool  # noqa: E402
from core.settings import PROJECT_ROOT  # noqa: E402
from starter.book.importer import ImportFile, crm_dir, load_mapping, load_rates, load_team, run_import  # noqa: E402

COUNTRIES = [("United States", "California"), ("United States", "New York"), ("United States", "Texas"),
             ("United Kingdom", ""), ("Germany", "Bayern"), ("France", ""), ("Japan", ""), ("Poland", ""),
             ("Brazil", "SP"), ("Canada", "Ontario"), ("Australia", "New South Wales"), ("Spain", ""),
             ("Netherlands", ""), ("Sweden", ""), ("India", "")]
OWNERS = ["Avery Lindqvist", "Jonas Becker", "Maja Nowak", "Casey Morgan", "", "Integration User"]
FIRST = ["Olivia", "Jürgen", "花子", "Zofia", "Marcus", "Élodie", "Søren", "Ana", "Wei", "Priya", "Tom", "Ngozi"]
LAST = ["Harper", "Weiß", "佐藤", "Wiśniewska", "O'Neill", "Marchand", "Østergaard", "Gómez", "Zhang", "Raman"]
TITLES = ["Head of Operations", "IT Manager", "Leiter Qualitätssicherung", "情報システム部 部長", "VP Customer Success",
          "Analyst", "Directeur financier", "Buyer", "Engineer", "Office Manager"]
INDUSTRIES = ["Retail", "Machinery", "Logistics and Supply Chain", "Computer Software", "Hospital & Health Care"]


def money(i: int) -> str:
    amount = 5_000 + (i * 7_919) % 245_000
    style = i % 6
    if style == 0:
        return f"${amount:,}"
    if style == 1:
        return "€ " + f"{amount:,}".replace(",", ".")
    if style == 2:
        return f"USD {amount // 1000}k"
    if style == 3:
        return f"£{amount:,}"
    if style == 4:
        return f"{amount}"
    return f"PLN {amount:,}".replace(",", " ")


def generate(folder: Path, companies: int, per_company: int, seed: int = 15) -> tuple[Path, Path]:
    rnd = random.Random(seed)
    today = date.today()
    company_path, contact_path = folder / "hubspot-companies.csv", folder / "hubspot-contacts.csv"
    with company_path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        out.writerow(["Record ID", "Company name", "Company owner", "Create Date", "Phone Number", "City",
                      "State/Region", "Country/Region", "Industry", "Company Domain Name", "Lifecycle Stage",
                      "Renewal Date", "Current ARR", "Health Score", "Description", "Associated Contact IDs"])
        for i in range(companies):
            country, region = COUNTRIES[i % len(COUNTRIES)]
            name = (f"株式会社ベンチ{i:06d}" if i % 17 == 0 else
                    f"Müller & Söhne {i:06d} GmbH" if i % 5 == 0 else f"Bench Customer {i:06d} Inc.")
            description = "Met at the summit.\nWants a pilot first." if i % 50 == 0 else ""
            out.writerow([str(20_000_000_000 + i), name, OWNERS[i % len(OWNERS)], "2021-03-07 15:26",
                          "+1 555 0100", "City", region, country, INDUSTRIES[i % len(INDUSTRIES)],
                          f"bench{i}.example", "Customer", (today + timedelta(days=30 + i % 700)).isoformat(),
                          money(i), str(40 + i % 60), description, ""])
    with contact_path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\n")
        out.writerow(["Record ID", "First Name", "Last Name", "Email", "Phone Number", "Contact owner",
                      "Primary Associated Company ID", "Job Title", "Lifecycle Stage", "Unsubscribed from all email",
                      "Associated Company", "Associated Company IDs"])
        n = 0
        for i in range(companies):
            for k in range(per_company):
                n += 1
                company = str(20_000_000_000 + i)
                companies_ids = company
                if n % 40 == 0 and i + 1 < companies:  # a contact of two companies
                    companies_ids = f"{company};{20_000_000_000 + i + 1}"
                email = "" if n % 97 == 0 else f"contact{n}@bench{i}.example"
                if n % 1009 == 0:
                    email = f"contact{n}(at)bench{i}.example"  # refused, with its row named
                out.writerow([str(60_000_000_000 + n), rnd.choice(FIRST), rnd.choice(LAST), email, "+1 555 0101",
                              "", company, TITLES[n % len(TITLES)], "Customer", "true" if n % 23 == 0 else "",
                              "", companies_ids])
    return company_path, contact_path


class RssSampler:
    """This process's RSS every second, from /proc (the importer runs in this process)."""

    def __init__(self):
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self.started, proc_status(os.getpid())["VmRSS"]))
            self._stop.wait(1.0)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


async def bench(args, stack) -> None:
    folder = stack.root / "exports"
    folder.mkdir()
    say(f"generating {args.companies:,} companies and {args.companies * args.contacts_per_company:,} contacts ...")
    t0 = time.monotonic()
    companies, contacts = generate(folder, args.companies, args.contacts_per_company)
    say(f"  {companies.stat().st_size / 1e6:,.1f} MB + {contacts.stat().st_size / 1e6:,.1f} MB "
        f"in {time.monotonic() - t0:.1f} s")
    start_postgres(stack)
    url = await prepare_database(stack, "imports")
    pool = await create_pool(url, 4)
    crm = crm_dir(PROJECT_ROOT / "playbooks")
    mapping, team, rates = load_mapping(crm / "hubspot.yaml", "hubspot"), load_team(crm / "team.yaml"), \
        load_rates(crm / "currencies.yaml")
    results = []
    try:
        for label in ("first import", "re-import (no change)"):
            last = [0.0]

            def progress(stage: str, done: int, total: int) -> None:
                now = time.monotonic()
                if now - last[0] > 10 or (total and done == total):
                    last[0] = now
                    say(f"  {stage}: {done:,}/{total:,}")

            rss_before = proc_status(os.getpid())["VmRSS"]
            load = os.getloadavg()[0]
            cpu_before = machine_cpu()
            with RssSampler() as rss:
                t0 = time.monotonic()
                report = await run_import(pool, mapping, dialect="hubspot", accounts=ImportFile(companies),
                                          contacts=ImportFile(contacts), team=team, rates=rates, apply=True,
                                          run_by="bench", progress=progress)
                wall = time.monotonic() - t0
            cpu_after = machine_cpu()
            busy = (cpu_after[0] - cpu_before[0]) / max(cpu_after[1] - cpu_before[1], 1e-9)
            values = [kb for _, kb in rss.samples]
            thirds = [values[len(values) * k // 3] for k in range(3)] if values else [0, 0, 0]
            results.append({
                "label": label, "wall": wall, "rows": report.rows, "rate": report.rows / wall,
                "counts": {k: (c.created, c.updated, c.unchanged, c.refused) for k, c in report.counts.items()},
                "sponsors": report.sponsors, "warnings": report.warnings.total,
                "rss_before": rss_before, "rss_peak": max(values or [0]), "rss_thirds": thirds,
                "rss_end": values[-1] if values else 0, "hwm": proc_status(os.getpid())["VmHWM"],
                "machine_busy": busy, "load": load,
            })
            r = results[-1]
            say(f"{label}: {r['rows']:,} rows in {wall:.1f} s = {r['rate']:,.0f} rows/s; {r['counts']}; "
                f"sponsors {r['sponsors']:,}; warnings {r['warnings']:,}")
            say(f"  RSS before {r['rss_before'] / 1024:.0f} MB, at 1/3 {thirds[1] / 1024:.0f} MB, at 2/3 "
                f"{thirds[2] / 1024:.0f} MB, end {r['rss_end'] / 1024:.0f} MB, peak {r['rss_peak'] / 1024:.0f} MB "
                f"(kernel high-water mark {r['hwm'] / 1024:.0f} MB); machine {busy:.0%} busy")
        size = await pool.fetchval("SELECT pg_database_size(current_database())")
        say(f"PostgreSQL database: {size / 1e6:,.0f} MB")
    finally:
        await pool.close()
    if not args.no_results:
        append_results(args, results, companies.stat().st_size + contacts.stat().st_size, size)


def append_results(args, results, file_bytes: int, db_bytes: int) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [
        "", f"## CRM import: `bench/import_100k.py --companies {args.companies} --contacts-per-company "
        f"{args.contacts_per_company}` ({when})", "",
        f"HubSpot exports generated with the quirks of real ones ({file_bytes / 1e6:,.0f} MB of CSV), imported with "
        f"apply through `run_import` (what `csplay import hubspot --apply` runs), on a private embedded PostgreSQL. "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.", "",
        "| run | rows | wall | rows/s | accounts c/u/=/r | contacts c/u/=/r | RSS before / 1/3 / 2/3 / end / peak "
        "| machine busy (load at start) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        a, c = r["counts"]["accounts"], r["counts"]["contacts"]
        rss = " / ".join(f"{kb / 1024:.0f}" for kb in (r["rss_before"], *r["rss_thirds"][1:], r["rss_end"],
                                                        r["rss_peak"]))
        lines.append(f"| {r['label']} | {r['rows']:,} | **{r['wall']:.1f} s** | {r['rate']:,.0f} | "
                     f"{'/'.join(f'{x:,}' for x in a)} | {'/'.join(f'{x:,}' for x in c)} | {rss} MB | "
                     f"{r['machine_busy']:.0%} ({r['load']:.1f}) |")
    lines += ["", f"PostgreSQL database afterwards: {db_bytes / 1e6:,.0f} MB. Goal: under 2 minutes, flat memory.", ""]
    with (PROJECT_ROOT / "bench" / "RESULTS.md").open("a") as fh:
        fh.write("\n".join(lines))
    say("figures appended to bench/RESULTS.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--contacts-per-company", type=int, default=3)
    parser.add_argument("--no-results", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (exports, PostgreSQL log)")
    return run_bench(bench, parser.parse_args(), "import-bench-")


if __name__ == "__main__":
    raise SystemExit(main())
