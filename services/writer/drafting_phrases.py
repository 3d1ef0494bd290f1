"""The sentences the local engine writes with, by intent and content structure.

Rules every phrase here keeps, because the optimizer checks them: plain, short words
(Flesch ≥ 60); at most 20 words once filled in; active voice; many open with a transition
word; none states a fact about the world — facts, figures, names, prices and results are
left to the writer as visible "[Add …]" placeholders. Fields: {kp} keyphrase, {t} the
section's topic, {T} the topic at the start of a sentence, {k}/{K} a keyword, {goal} the
reader's goal for this intent, {unit} what the article is (guide, list, review...).
"""

from __future__ import annotations

GOALS = {
    "informational": "understand it well enough to act",
    "commercial": "choose the option that fits you",
    "transactional": "buy or book with confidence",
    "navigational": "get to the right place fast",
}

UNITS = {
    "article": "article",
    "guide": "guide",
    "listicle": "list",
    "how_to": "guide",
    "comparison": "comparison",
    "review": "review",
    "landing_page": "page",
}

# The first sentence of the article: it answers the query with what the answer turns on
# (the article's own sections), which is true of the brief without inventing facts.
ANSWER_FIRST = {
    "informational": "{KP} comes down to {topics}.",
    "commercial": "The right choice of {kp} comes down to {topics}.",
    "transactional": "Before you act on {kp}, check {topics}.",
    "navigational": "To reach {kp} quickly, check {topics}.",
}
ANSWER_FIRST_HOW_TO = "To get {kp} right, work through {topics}."

INTRO_PLACEHOLDER = {
    "informational": "[Add a fact: the one-line answer to “{kp}”, with its source.]",
    "commercial": "[Add a fact: the pick you recommend for “{kp}” and why, with a source.]",
    "transactional": "[Add a detail: the price, terms or delivery that matter for “{kp}”.]",
    "navigational": "[Add a detail: the official page or contact for “{kp}”.]",
}

# The same without the keyphrase, for a draft whose headings (H1, sections, keyword
# subsections, FAQ questions) already spend most of its keyphrase budget (3 %).
INTRO_PLACEHOLDER_PLAIN = {
    "informational": "[Add a fact: the one-line answer to the title's question, with its source.]",
    "commercial": "[Add a fact: the pick you recommend and why, with a source.]",
    "transactional": "[Add a detail: the price, terms or delivery that matter here.]",
    "navigational": "[Add a detail: the official page or contact the reader is after.]",
}

INTRO_MORE = (
    "This {unit} takes each point in turn, in plain words.",
    "Each section ends with what to check, so you can {goal}.",
    "It also answers {n_questions} common questions at the end.",
    "Use it to {goal}.",
)

SECTION_LEAD = (
    "This part covers {t}.",
    "Next, look at {t}.",
    "Now turn to {t}.",
    "Here the focus is {t}.",
    "The points below deal with {t}.",
    "Then there is {t}.",
    "This section walks through {t}.",
    "{T} comes next.",
)

GUIDE = (
    "First, check the basics of {t}.",
    "Start with what you need from {t}, then compare the details.",
    "Write down the two or three things that matter most to you here.",
    "Because every case differs, check which points on {t} apply to you.",
    "For example, note what {t} looks like in your own situation.",
    "Also, keep a short list of the questions you still have.",
    "However, do not rely on broad claims about {t} without a source.",
    "In practice, a simple checklist keeps {t} under control.",
    "Then set aside the points that do not affect your goal.",
    "As a result, you will know which details to check first.",
    "Keep your goal in view: {goal}.",
    "In short, {t} matters as far as it serves your goal.",
    "Even so, small details in {t} can change the outcome.",
    "After that, compare what you found with your own needs.",
    "Above all, be honest about your budget, time and skills.",
    "Similarly, check how {t} fits with the rest of your plan.",
    "That is why {t} is worth a few minutes of careful thought.",
    "On the other hand, some points on {t} will not matter to you at all.",
    "So, pick the one point on {t} you can act on today.",
    "Finally, note anything on {t} you want to check again later.",
    "If a point on {t} is not clear, ask someone who knows it well.",
    "Clear facts beat vague promises here.",
    "Take your time with this step.",
    "Once you know where you stand, the next step is easier.",
    "Look for recent, specific details rather than general advice.",
    "A short note of what you learn will save time later.",
    "Small, steady steps tend to beat one big push.",
    "Then check your notes against what you set out to do.",
    "Also, be wary of advice that fits everyone the same way.",
    "For example, a quick sketch on paper can make a choice clear.",
    "If two sources disagree, look for a third one.",
    "However, do not wait for perfect facts before you start.",
    "Next, pick a date to review how things went.",
    "In short, plan first and act second.",
    "Because time is short for most people, keep it simple.",
    "Also, ask what you would do if your first plan fails.",
    "As a rule, write your questions down before you ask them.",
    "Then, keep only the notes you will use again.",
    "For instance, a list of three options is easier to weigh than ten.",
    "So, think about the next step, not the whole road.",
    "Even so, a second opinion rarely hurts.",
    "Next, set a simple test for {t}: what would a good result look like?",
    "Also, think about how {t} changes over time.",
    "For instance, a small change in {t} can save you money or effort.",
    "Then ask which part of {t} you can try first at low risk.",
    "Because {t} is easy to get wrong, go slowly at first.",
    "In most cases, the simple route through {t} is the right start.",
    "Also, talk to people who have dealt with {t} before.",
    "Meanwhile, keep notes on what works and what does not.",
    "Besides cost, think about the time {t} takes.",
    "For this reason, plan {t} before you spend anything.",
    "Then compare your notes on {t} with what you read here.",
    "Still, your own needs should decide how much {t} matters.",
    "Even a rough plan for {t} beats no plan.",
    "Later, come back to {t} and see what changed.",
    "To sum up this point, {t} rewards a little care.",
    "Also, ask what could go wrong with {t} and how you would fix it.",
    "Thus, the details of {t} are worth a second look.",
    "Otherwise, {t} can cost more time than it should.",
    "Now write one line on what {t} means for you.",
    "In fact, a clear view of {t} makes each later choice easier.",
    "Ask a friend to read your notes on {t} and point out gaps.",
    "Next, rank what you learned about {t} from most to least useful.",
    "Then cross out any point on {t} that you cannot check.",
    "Also, mark the one question on {t} that still worries you.",
    "For example, sketch what a good week with {t} would look like.",
    "Because plans change, review {t} again in a month.",
    "Meanwhile, try a small test of {t} before a big one.",
    "In the end, {t} is about what works for you.",
    "However small it seems, {t} can shape the result.",
    "After a first try at {t}, write down what surprised you.",
    "So, keep {t} simple until you know more.",
    "It is worth checking {t} twice.",
    "If you are short on time, start with {t}.",
    "Then look at {t} from the point of view of someone new to it.",
    "As you go, keep a list of terms on {t} you want to look up.",
)

GUIDE_BY_INTENT = {
    "commercial": (
        "Next, compare at least two options on {t} side by side.",
        "Also, look at the total cost, not just the first price.",
        "Check reviews that explain why, not just star ratings.",
        "For example, ask how each option handles {t} after a year of use.",
        "Price alone rarely tells you which option lasts.",
    ),
    "transactional": (
        "Before you pay, check the terms that apply to {t}.",
        "Also, compare the full price with fees and delivery.",
        "Keep proof of what you agreed to.",
        "For example, check the return rules before you order.",
    ),
    "navigational": (
        "Use the official site or app when you can.",
        "Also, check the address in your browser before you sign in.",
        "If the page has moved, search the brand name plus {t}.",
    ),
    "informational": (
        "In other words, aim to understand {t} well enough to explain it.",
        "For example, try to put {t} in one sentence of your own.",
        "Also, note where experts agree and where they do not.",
    ),
}

GUIDE_BY_STRUCTURE = {
    "how_to": (
        "Do one step at a time and check the result before you move on.",
        "Gather what you need before you begin.",
        "If a step fails, go back one step and try again.",
    ),
    "review": (
        "Then weigh what works against what falls short.",
        "Think about who this suits and who should look elsewhere.",
    ),
    "listicle": (
        "Each pick below suits a different need, so read them with yours in mind.",
        "Skip the picks that clearly do not match your needs.",
    ),
    "comparison": (
        "Then note where the options are the same and where they differ.",
        "A side-by-side view makes the trade-offs plain.",
    ),
    "landing_page": (
        "Here is what you get and how to start.",
        "Ask us anything that is not clear before you commit.",
    ),
}

KEYPHRASE = (
    "Keep {kp} in mind as you weigh each detail here.",
    "This is a key part of {kp}.",
    "It ties {t} back to {kp} and to your goal.",
    "Good choices here make the rest of {kp} simpler.",
    "With {kp}, this is where the details start to matter.",
    "Most questions about {kp} touch on this point.",
    "So, look at {t} through the lens of {kp}.",
    "That is where {kp} and your own needs meet.",
)

# More of the same, each tied to a topic, for a long draft whose keyphrase runs sparse:
# the ones above are used up (once each, or once per topic) long before 5,000 words, and
# a draft with few keyword-bearing headings fell under 0.5 % (24 in 4,802 words).
KEYPHRASE_MORE = (
    "For {kp}, {t} deserves a close look.",
    "Think of {t} as one piece of {kp}.",
    "Also, ask how {t} shapes your plans for {kp}.",
    "Then note what {t} means for {kp} in your case.",
    "In short, {t} is part of the picture for {kp}.",
    "Because {t} touches {kp}, give it some thought.",
    "When you weigh {kp}, keep {t} on your list.",
    "Next, compare {t} with what you want from {kp}.",
)

KEYWORD = (
    "If you searched for {k}, this part applies to you.",
    "{K} fits here too, and the same checks apply.",
    "For {k}, look at the same points with a little more care.",
    "Readers asking about {k} will find the key points here.",
    "Also, {k} needs its own short answer.",
    "{K} is a common angle on this topic.",
)

# The same, without repeating the keyword (the H3 above names it): for a keyword that
# holds the keyphrase, once the draft's keyphrase density runs high.
KEYWORD_PLAIN = (
    "If this is what you searched for, this part applies to you.",
    "This angle fits here too, and the same checks apply.",
    "Here, look at the same points with a little more care.",
    "Readers asking about this angle will find the key points here.",
    "Also, this angle needs its own short answer.",
    "It is a common angle on this topic.",
)

PLACEHOLDERS = {
    "informational": (
        "[Add a fact: a clear figure or date about {t}, with its source.]",
        "[Add an example: a real case that shows {t}.]",
        "[Add a source: a link to an expert or official page on {t}.]",
    ),
    "commercial": (
        "[Add a fact: the price range for {t}, with the date you checked it.]",
        "[Add a comparison: how two named options differ on {t}.]",
        "[Add a source: a test or review that backs up the claim on {t}.]",
    ),
    "transactional": (
        "[Add a detail: the price, terms or delivery time for {t}.]",
        "[Add a fact: what the buyer gets with {t}, from the offer itself.]",
        "[Add a source: the page with the full terms for {t}.]",
    ),
    "navigational": (
        "[Add a detail: the exact page, address or contact for {t}.]",
        "[Add a fact: opening hours or service status for {t}.]",
    ),
}
PLACEHOLDERS_BY_STRUCTURE = {
    "how_to": "[Add a step: the exact action for {t}, and any tool it needs.]",
    "review": "[Add a result: what you saw when you tried {t} yourself.]",
    "listicle": "[Add a pick: the product or option for {t}, with one reason.]",
}

CHECKLIST_LEAD = "Check these points on {t}:"
CHECKLIST = {
    "informational": (
        "What {t} means in plain words.",
        "Why it matters for your goal.",
        "How to check it in your own case.",
        "When to ask an expert instead.",
    ),
    "commercial": (
        "Price and total cost of {t}.",
        "Quality and how long it lasts.",
        "Who each option suits best.",
        "Warranty, returns and support.",
    ),
    "transactional": (
        "Price, fees and any extra costs for {t}.",
        "Delivery or start times.",
        "Terms, returns and guarantees.",
        "How to place the order.",
    ),
    "navigational": (
        "The official page or app for {t}.",
        "The right contact or account.",
        "Service status or opening hours.",
        "Safe ways to sign in.",
    ),
}
CHECKLIST_HOW_TO = (
    "What you need before you begin with {t}.",
    "The order of the steps.",
    "How to check the result.",
    "What to do if it goes wrong.",
)

SUBSECTION_H3 = (
    "What to check on {t}",
    "Mistakes to avoid with {t}",
    "Questions to ask about {t}",
    "How {t} fits your plan",
)

# Subsection headings that do not use the keyphrase, to keep Yoast's subheading band.
PLAIN_H3 = (
    "What to Check First",
    "Mistakes to Avoid",
    "Questions to Ask",
    "How to Decide",
    "Where to Start",
    "What You Can Skip",
    "Signs of a Good Choice",
    "Before You Commit",
    "A Quick Test",
    "Keeping It Simple",
)

# Engine-owned sections: each heading with and without the keyphrase, so the share of
# subheadings that use it can be tuned without touching the brief's own outline.
TABLE_HEADINGS = ("{KP} compared side by side", "Side-by-side comparison")
TABLE_LEAD = "Use this table to compare the options on the points above."
TABLE_NOTE = "[Add facts: fill each cell from the maker's or seller's own pages, with dates.]"
TABLE_COLUMNS = ("Price", "Best for", "Main strength", "Main drawback")

FAQ_HEADINGS = ("{KP}: frequently asked questions", "Frequently asked questions")
FAQ_ANSWER = (
    "The section “{h}” above covers what the answer turns on.",
    "In short, see “{h}” above for what this depends on.",
    "The answer comes back to “{h}”, covered above.",
    "For the points that decide it, read “{h}” above.",
)
FAQ_ANSWER_BY_NUMBER = (
    "Section {n} above covers what the answer turns on.",
    "In short, see section {n} above for what this depends on.",
    "The answer comes back to section {n}, covered above.",
    "For the points that decide it, read section {n} above.",
)
# Shorter pointers, for a draft whose fixed parts alone would overshoot a short target.
FAQ_ANSWER_SHORT = (
    "See “{h}” above.",
    "More in “{h}” above.",
    "“{h}” above has the details.",
    "Start with “{h}” above.",
)
FAQ_ANSWER_SHORT_BY_NUMBER = (
    "See section {n} above.",
    "More in section {n} above.",
    "Section {n} above has the details.",
    "Start with section {n} above.",
)
FAQ_PLACEHOLDER = "[Add a fact: a direct, sourced answer to “{q}”.]"
FAQ_PLACEHOLDER_PLAIN = "[Add a fact: a direct, sourced answer to question {n}.]"

CLOSING_HEADINGS = {
    "informational": ("Key takeaways on {kp}", "Key takeaways"),
    "commercial": ("How to choose {kp}", "How to choose"),
    "transactional": ("Get started with {kp}", "How to get started"),
    "navigational": ("Where to go next for {kp}", "Where to go next"),
}
CLOSING_HEADINGS_BY_STRUCTURE = {
    "how_to": ("Next steps for {kp}", "Next steps"),
    "review": ("Final thoughts on {kp}", "Final thoughts"),
}
CLOSING_LEAD = "To sum up, here is what to take away from each part."
CLOSING_ITEMS = (
    "{T}: know what you need before you compare.",
    "{T}: look for clear, sourced facts.",
    "{T}: decide what you can skip.",
    "{T}: note the points to check again.",
    "{T}: match it to your own goal.",
)
CLOSING_CTA = "[Add a call to action: the one next step you want readers to take.]"

# Default H2s when the brief's outline is short, by structure ({KP} = keyphrase).
DEFAULT_SECTIONS = {
    "article": (
        "What {KP} Means",
        "Why {KP} Matters",
        "How It Works",
        "Common Mistakes",
        "What to Check Before You Start",
        "Where to Learn More",
    ),
    "guide": (
        "{KP} Basics",
        "Getting Started",
        "Tools and Resources",
        "Common Mistakes to Avoid",
        "Tips for Better Results",
        "How to Track Progress",
    ),
    "listicle": (
        "How to Use This List",
        "What to Look For",
        "Options for Beginners",
        "Options for Experts",
        "Budget Options",
        "How to Decide",
    ),
    "how_to": (
        "What You Need",
        "Before You Start",
        "Step-by-Step: {KP}",
        "How to Check the Result",
        "Common Mistakes",
        "Troubleshooting",
    ),
    "comparison": (
        "The Options at a Glance",
        "How They Differ on Cost",
        "How They Differ on Quality",
        "Which One Fits Which Need",
        "Trade-Offs",
        "Verdict",
    ),
    "review": (
        "{KP} at a Glance",
        "What Works Well",
        "What Falls Short",
        "Pros and Cons",
        "Who It Suits",
        "Alternatives",
    ),
    "landing_page": (
        "What You Get",
        "Who It Is For",
        "How It Works",
        "Pricing",
        "Why People Choose Us",
        "Questions Before You Start",
    ),
}

IMAGE_CAPTION = "[Add an image: {what}.]"

# The meta description's opening sentence, the only one with the keyphrase.
META_OPENING = {
    "informational": "{KP} explained: what it means, why it matters and what to check first.",
    "commercial": "{KP}: how to compare the options and choose the one that fits you.",
    "transactional": "{KP}: what to check on price, terms and delivery before you act.",
    "navigational": "{KP}: where to go and what to check to reach the right place.",
}
