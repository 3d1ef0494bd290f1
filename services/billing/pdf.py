"""Invoice PDFs (fpdf2, core fonts: text is kept to Latin-1)."""

from __future__ import annotations

from decimal import Decimal

from fpdf import FPDF

from services.billing.models import Invoice


def _t(value: object) -> str:
    return str(value).encode("latin-1", "replace").decode("latin-1")


def _money(value: object, currency: str) -> str:
    return f"{Decimal(str(value)):,.2f} {currency}"


def render_invoice(invoice: Invoice, account_name: str = "") -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(_t(f"Invoice {invoice.invoice_number}"))
    pdf.set_author("IGNY8")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 22)
    pdf.cell(0, 12, "IGNY8", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(0, 6, "AI SEO content platform", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _t(f"Invoice {invoice.invoice_number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    facts = [
        ("Status", invoice.status),
        ("Type", invoice.invoice_type.replace("_", " ")),
        ("Issued", invoice.issued_at.date().isoformat() if invoice.issued_at else "-"),
        ("Due", invoice.due_date.date().isoformat() if invoice.due_date else "-"),
        ("Paid", invoice.paid_at.date().isoformat() if invoice.paid_at else "-"),
        ("Billed to", account_name or f"Account {invoice.account_id}"),
    ]
    for label, value in facts:
        pdf.cell(30, 6, _t(label + ":"))
        pdf.cell(0, 6, _t(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    widths = (100, 20, 35, 35)
    pdf.set_font("Helvetica", "B", 10)
    for width, head in zip(widths, ("Description", "Qty", "Unit price", "Amount"), strict=True):
        pdf.cell(width, 8, head, border="B", align="L" if head == "Description" else "R")
    pdf.ln()
    pdf.set_font("Helvetica", "", 10)
    for line in invoice.lines:
        cells = (
            _t(line.get("description", "")),
            str(line.get("quantity", 1)),
            _money(line.get("unit_price", 0), invoice.currency),
            _money(line.get("amount", 0), invoice.currency),
        )
        for i, (width, cell) in enumerate(zip(widths, cells, strict=True)):
            pdf.cell(width, 8, cell, align="L" if i == 0 else "R")
        pdf.ln()
    pdf.ln(4)
    totals: tuple[tuple[str, Decimal, bool], ...] = (
        ("Subtotal", invoice.subtotal, False), ("Tax", invoice.tax, False),
        ("Total", invoice.total, True))
    for label, amount, bold in totals:
        pdf.set_font("Helvetica", "B" if bold else "", 11 if bold else 10)
        pdf.cell(sum(widths[:3]), 8, label, align="R")
        pdf.cell(widths[3], 8, _money(amount, invoice.currency), align="R",
                 new_x="LMARGIN", new_y="NEXT")
    if invoice.credits:
        pdf.ln(6)
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(0, 6, _t(f"Credits on payment: {invoice.credits:,}"),
                 new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
