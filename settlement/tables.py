"""Settlement runs, the cleared pairs they computed, and the statements they published."""

from piccolo.columns import BigInt, Integer, Text, Varchar
from piccolo.table import Table


class SettlementRun(Table, tablename="settlement_runs"):
    """One per business date (UNIQUE): running -> published, or failed with a report."""

    id = Varchar(length=40, primary_key=True)
    business_date = Varchar(length=10, unique=True)  # YYYY-MM-DD in the coalition time zone
    status = Varchar(length=16)  # running | published | failed
    period_start_us = BigInt()
    period_end_us = BigInt()
    attempts = Integer(default=1)
    started_at_us = BigInt()
    finished_at_us = BigInt(null=True, default=None)
    report = Text(default="")  # JSON: the reconciliation breaks of a failed run


class ClearedPair(Table, tablename="cleared_pairs"):
    """Net cleared points from payer (issuer) to payee for one run, valued and fee'd once."""

    id = Varchar(length=120, primary_key=True)  # run_id:payer:payee, so a retry cannot duplicate
    run_id = Varchar(length=40)
    payer_id = Varchar(length=64)
    payee_id = Varchar(length=64)
    points = BigInt()
    value_minor = BigInt()
    fee_minor = BigInt()


class Statement(Table, tablename="statements"):
    """A signed statement (partner, or the operator summary with partner_id '*')."""

    id = Varchar(length=120, primary_key=True)  # business_date:partner_id
    run_id = Varchar(length=40)
    business_date = Varchar(length=10)
    partner_id = Varchar(length=64)
    signed_json = Text()
    signed_csv = Text()
    statement_digest = Varchar(length=80)


ALL_TABLES: list[type[Table]] = [SettlementRun, ClearedPair, Statement]
