"""Default credit costs (from the original IGNY8) and the default credit packages.

Inserted with ON CONFLICT DO NOTHING: rows an administrator already changed stay as they are.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# operation_type, display name, unit, credits per unit, description
COSTS = [
    ("clustering", "Keyword clustering", "per_request", 10, "10 credits per clustering request"),
    ("idea_generation", "Content ideas", "per_item", 2, "2 credits per generated idea"),
    ("content_generation", "Content generation", "per_100_words", 1, "1 credit per 100 words"),
    ("image_prompt_extraction", "Image prompts", "per_item", 2, "2 credits per content item"),
    ("image_generation", "Image generation", "per_image", 4, "4 credits per image"),
    ("optimization", "Content optimization", "per_200_words", 1, "1 credit per 200 words"),
    ("linking", "Internal linking", "per_request", 1, "1 credit per linking request"),
]

# slug, name, credits, price (USD), featured, sort order
PACKAGES = [
    ("starter-1000", "Starter", 1000, "10.00", False, 1),
    ("growth-5000", "Growth", 5000, "45.00", True, 2),
    ("pro-20000", "Pro", 20000, "160.00", False, 3),
    ("agency-100000", "Agency", 100000, "700.00", False, 4),
]


def upgrade() -> None:
    bind = op.get_bind()
    for operation, name, unit, cost, description in COSTS:
        bind.execute(
            sa.text(
                "INSERT INTO credit_cost_configs (operation_type, display_name, description, unit,"
                " credits_cost, tokens_per_credit, min_credits, is_active)"
                " VALUES (:op, :name, :description, :unit, :cost, NULL, 0, true)"
                " ON CONFLICT (operation_type) DO NOTHING"
            ),
            {"op": operation, "name": name, "description": description, "unit": unit,
             "cost": cost},
        )
    for slug, name, credits, price, featured, order in PACKAGES:
        bind.execute(
            sa.text(
                "INSERT INTO credit_packages (name, slug, credits, price, currency, description,"
                " is_active, is_featured, sort_order)"
                " VALUES (:name, :slug, :credits, CAST(:price AS numeric), 'USD', :description,"
                " true, :featured, :order) ON CONFLICT (slug) DO NOTHING"
            ),
            {"name": name, "slug": slug, "credits": credits, "price": price,
             "description": f"{credits:,} credits that never expire",
             "featured": featured, "order": order},
        )


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.text("DELETE FROM credit_packages WHERE slug = ANY(:slugs)"),
                 {"slugs": [p[0] for p in PACKAGES]})
    bind.execute(sa.text("DELETE FROM credit_cost_configs WHERE operation_type = ANY(:ops)"),
                 {"ops": [c[0] for c in COSTS]})
