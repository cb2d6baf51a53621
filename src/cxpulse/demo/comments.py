"""Free-text comments for synthetic survey answers, by touchpoint and sentiment.

Kept apart from the generator so the wording can grow without touching the simulation.
"""

from __future__ import annotations

from typing import Literal

Sentiment = Literal["positive", "neutral", "negative"]

POSITIVE: dict[str, tuple[str, ...]] = {
    "website": ("Found what I needed in a minute.", "Clear pricing page, thanks.", "The new docs are great."),
    "checkout": ("Checkout was quick and painless.", "Paying took seconds.", "Loved the saved card option."),
    "onboarding": ("Setup wizard got me going right away.", "The welcome tour was genuinely useful."),
    "usage": ("The app is fast and does what I need.", "Reports save me hours every week."),
    "support": ("Solved on the first call, great agent!", "Fast and friendly chat support."),
    "subscription": ("Upgrading was a single click.", "Fair price for what I get."),
}
NEGATIVE: dict[str, tuple[str, ...]] = {
    "website": ("Could not find the pricing anywhere.", "Pages load very slowly."),
    "checkout": (
        "Payment failed twice before it went through.",
        "Card declined with no explanation.",
        "Charged but got no confirmation email.",
    ),
    "onboarding": ("Setup kept failing at the import step.", "Too many steps before I could try anything."),
    "usage": ("The app crashes when I export.", "Sync has been broken all day."),
    "support": (
        "Had to explain my problem three times.",
        "Nobody followed up, still not fixed.",
        "Waited 40 minutes on the phone.",
    ),
    "subscription": ("Cancelling was far too hard.", "Renewal price went up without notice."),
}
NEUTRAL: tuple[str, ...] = ("It was fine.", "Nothing special.", "OK overall.", "Does the job.")


def comment(touchpoint: str, sentiment: Sentiment, pick: int) -> str:
    """A comment for `touchpoint` in the given mood; `pick` (any int, e.g. from the caller's RNG) selects."""
    if sentiment == "neutral":
        pool = NEUTRAL
    else:
        pool = (POSITIVE if sentiment == "positive" else NEGATIVE).get(touchpoint, NEUTRAL)
    return pool[pick % len(pool)]
