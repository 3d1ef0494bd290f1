"""Intent rules: one per keyword, the order of the rules, a cluster's intent."""

from __future__ import annotations

import pytest

from services.planner.intent import Intent, classify_intent, dominant_intent

INFO, N, C, T = (Intent.INFORMATIONAL, Intent.NAVIGATIONAL, Intent.COMMERCIAL,
              Intent.TRANSACTIONAL)


@pytest.mark.parametrize(
    ("keyword", "intent"),
    [
        # Questions and guides are informational, even with a buying word.
        ("how to choose running shoes", INFO),
        ("what is the keto diet", INFO),
        ("python tutorial for beginners", INFO),
        ("best time to book flights", INFO),
        ("best way to learn spanish", INFO),
        ("best things to do in rome", INFO),
        ("best banana bread recipe", INFO),
        ("how much paint do i need", INFO),
        ("best exercises for lower back pain", INFO),
        ("what is a good credit score", INFO),
        ("is my budgie a boy or girl", INFO),
        ("migraine symptoms", INFO),
        # Weighing options is commercial.
        ("best running shoes", C),
        ("asana vs trello", C),
        ("rome or florence", C),
        ("is notion better than evernote", C),
        ("difference between a roth and a traditional ira", C),
        ("hubspot crm review", C),
        ("slack alternatives", C),
        ("is costco membership worth it", C),
        ("travel insurance for seniors", C),
        ("best budget smartphones", C),
        ("best hotels in paris", C),
        ("credit cards with no foreign transaction fees", C),
        ("docusign competitors", C),
        ("eczema cream", C),
        ("strongest allergy medicine", C),
        ("best time tracking app", C),
        ("live chat software for website", C),
        # Ready to act, including the price of a product or service.
        ("buy dog food online", T),
        ("cheap hiking boots", T),
        ("wedding dress shops near me", T),
        ("how much does lasik cost", T),
        ("how much is a passport", T),
        ("cheap flights to rome", T),
        ("hotels in paris", T),
        ("mortgage rates today", T),
        ("shopify pricing", T),
        ("water heater repairs", T),
        ("plumbers in austin tx", T),
        ("termite treatment cost", T),
        ("sell used iphone", T),
        ("download tiktok", T),
        # One site, app or account.
        ("chase login", N),
        ("youtube", N),
        ("best buy", N),
        ("home depot near me", N),
        ("amazon.com customer service", N),
        ("spotify web player", N),
        ("ryanair check in", N),
        ("apple support", N),
        ("fedex tracking", N),
        ("southwest airlines", N),
    ],
)
def test_intent_rules(keyword: str, intent: Intent) -> None:
    assert classify_intent(keyword) is intent


def test_blank_keyword_is_informational() -> None:
    assert classify_intent("  ") is INFO


def test_cluster_intent_follows_volume() -> None:
    assert dominant_intent([(INFO, 10), (C, 500)]) is C
    assert dominant_intent([(INFO, 1), (T, 1)]) is T
    assert dominant_intent([]) is INFO
