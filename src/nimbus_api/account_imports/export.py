"""The fleet as CSV, in the columns the import reads (``columns.EXPORT_COLUMNS``), without any secret.

The password columns are there and empty, so a person can fill them in and import the file elsewhere:
every other setting reads back as it was. A cell a spreadsheet would take for a formula (``=``, ``+``,
``-``, ``@`` first) is written with a leading ``'``, which the import removes.
"""

from __future__ import annotations

import csv
import io
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nimbus_api.account_imports.columns import EXPORT_COLUMNS, FORMULA_START
from nimbus_api.models import EmailAccount


def guard(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def account_row(account: EmailAccount) -> dict[str, str]:
    def text(value: object) -> str:
        return "" if value is None else str(value)

    row = {
        "email": account.email,
        "from_name": text(account.from_name),
        "smtp_host": account.smtp_host,
        "smtp_port": text(account.smtp_port),
        "smtp_mode": account.smtp_mode,
        "smtp_username": text(account.smtp_username),
        "smtp_password": "",
        "imap_host": text(account.imap_host),
        "imap_port": text(account.imap_port) if account.imap_host else "",
        "imap_mode": text(account.imap_mode) if account.imap_host else "",
        "imap_username": text(account.imap_username) if account.imap_host else "",
        "imap_password": "",
        "imap_folder": text(account.imap_folder) if account.imap_host else "",
        "daily_limit": text(account.daily_send_limit),
        "warmup_enabled": "true" if account.warmup_enabled else "false",
        "dkim_selector": text(account.dkim_selector),
        "label": text(account.label),
        "provider": account.provider,
    }
    return {name: guard(row[name]) for name in EXPORT_COLUMNS}


async def export_csv(session: AsyncSession, workspace_id: uuid.UUID) -> tuple[str, int]:
    """(the CSV text, how many accounts), oldest account first."""
    accounts = list(
        await session.scalars(
            select(EmailAccount).where(EmailAccount.workspace_id == workspace_id).order_by(EmailAccount.id)
        )
    )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for account in accounts:
        writer.writerow(account_row(account))
    return out.getvalue(), len(accounts)
