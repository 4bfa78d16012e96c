"""Demo data: two libraries, their clubs, staff log-ins and a few hundred members."""

from __future__ import annotations

import random

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from accounts.models import Consortium, Library, Role, User
from accounts.services import create_user
from klubpost.db import Base, utcnow
from subscribers.models import Club
from subscribers.services import create_club, create_subscriber, join_club
from tracking.rollup import roll_up

DEMO_PASSWORD = "klubpost-demo"
CONSORTIUM_ADMIN = "konsortium@demo.klubpost.dk"

LIBRARIES = [
    {
        "name": "Herning Bibliotekerne",
        "slug": "herning",
        "domain": "herning.demo.klubpost.dk",
        "timezone": "Europe/Copenhagen",
        "language": "da",
        "clubs": [
            ("VIP-klubben", "vip", "Forpremierer, forfatterbesøg og særlige tilbud."),
            ("Familieklubben", "familie", "Oplevelser for børn og voksne sammen."),
            (
                "Her er debat",
                "debat",
                "Artikler, boganbefalinger og forsalg til debatter.",
            ),
        ],
        "first_names": [
            "Anna",
            "Mads",
            "Sofie",
            "Lars",
            "Ida",
            "Jens",
            "Freja",
            "Oliver",
        ],
        "last_names": ["Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen", "Larsen"],
        "branches": ["Hovedbiblioteket", "Lind", "Sunds", "Aulum"],
        "events": [
            ("Forfatteraften med Ida Jessen", "vip", 12, "Hovedbiblioteket, salen"),
            ("Debat: Hvem ejer byens rum?", "debat", 19, "Hovedbiblioteket, caféen"),
            ("Familielørdag: byg en robot", "familie", 26, "Lind bibliotek"),
            ("Læsekreds om klimaromaner", "debat", -7, "Sunds bibliotek"),
        ],
        "drafts": {
            "before_event": ("Kom til forfatteraften", "Sæt kryds i kalenderen"),
            "after_event": ("Tak for i aftes: slides og læseliste", "Materialer"),
            "regular": ("Nyt fra klubben i denne måned", "Det sker"),
        },
        "sent": [
            ("Læsetips til de mørke aftener", "Læs, lyt og kom med", 31),
            ("Nyt fra debatklubben", "Debatter og bøger", 3),
        ],
        "intro": (
            "Kære medlem. Her er nyt fra biblioteket.\n\nVi glæder os til at se dig."
        ),
    },
    {
        "name": "Bibliotheek Utrecht",
        "slug": "utrecht",
        "domain": "utrecht.demo.klubpost.nl",
        "timezone": "Europe/Amsterdam",
        "language": "nl",
        "clubs": [
            ("VIP-club", "vip", "Voorpremières, schrijversbezoek en extra's."),
            ("Gezinsclub", "gezin", "Activiteiten voor kinderen en ouders."),
            ("Debatclub", "debat", "Artikelen, boektips en voorverkoop voor debatten."),
        ],
        "first_names": [
            "Emma",
            "Daan",
            "Julia",
            "Sem",
            "Tess",
            "Lucas",
            "Sanne",
            "Bram",
        ],
        "last_names": ["de Jong", "Jansen", "de Vries", "van Dijk", "Bakker", "Visser"],
        "branches": ["Neude", "Oog in Al", "Overvecht", "Leidsche Rijn"],
        "events": [
            ("Schrijversavond met Tommy Wieringa", "vip", 10, "Neude, grote zaal"),
            ("Debat: wie bezit de stad?", "debat", 17, "Neude, café"),
            ("Gezinszaterdag: bouw een robot", "gezin", 24, "Leidsche Rijn"),
            ("Leesclub over klimaatromans", "debat", -5, "Oog in Al"),
        ],
        "drafts": {
            "before_event": ("Kom naar de schrijversavond", "Zet het in je agenda"),
            "after_event": (
                "Bedankt voor gisteravond: slides en leeslijst",
                "Materialen",
            ),
            "regular": ("Nieuws van de club deze maand", "Dit gebeurt er"),
        },
        "sent": [
            ("Leestips voor de donkere avonden", "Lezen, luisteren, meedoen", 31),
            ("Nieuws van de debatclub", "Debatten en boeken", 3),
        ],
        "intro": "Beste lid. Hier is het nieuws van de bibliotheek.\n\nTot snel!",
    },
]


def demo_logins(session: Session) -> list[tuple[str, str, str, str]]:
    """The demo log-ins, if the demo is loaded: (library, role, e-mail, password)."""
    if session.scalar(select(User.id).where(User.email == CONSORTIUM_ADMIN)) is None:
        return []
    logins = [
        (
            "(all libraries)",
            Role.CONSORTIUM_ADMIN.value,
            CONSORTIUM_ADMIN,
            DEMO_PASSWORD,
        )
    ]
    for spec in LIBRARIES:
        for role in (Role.ADMIN, Role.EDITOR, Role.STAFF):
            logins.append((spec["name"], role.value, _email(role, spec), DEMO_PASSWORD))
    return logins


def _email(role: Role, spec: dict) -> str:
    return f"{role.value}@{spec['domain']}"


def load_demo(
    session: Session, reset: bool = False
) -> list[tuple[str, str, str, str]] | None:
    """Load the demo; None if it is already there (and reset is not asked for)."""
    if reset:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "alembic_version":
                session.execute(delete(table))
    elif demo_logins(session):
        return None
    rng = random.Random(2026)
    consortium = Consortium(name="Bibliotekssamarbejdet Nord-Vest", slug="nordvest")
    session.add(consortium)
    session.flush()
    create_user(
        session,
        email=CONSORTIUM_ADMIN,
        name="Konsortiets administrator",
        password=DEMO_PASSWORD,
        role=Role.CONSORTIUM_ADMIN,
        consortium_id=consortium.id,
    )
    for spec in LIBRARIES:
        _load_library(session, spec, consortium, rng)
    session.commit()
    for spec in LIBRARIES:
        for subject, heading, days_ago in spec["sent"]:
            _load_sent_issue(session, spec, subject, heading, days_ago, rng)
    roll_up(session)
    return demo_logins(session)


def _load_library(
    session: Session, spec: dict, consortium: Consortium, rng: random.Random
) -> None:
    library = Library(
        consortium_id=consortium.id,
        name=spec["name"],
        slug=spec["slug"],
        domain=spec["domain"],
        timezone=spec["timezone"],
        language=spec["language"],
    )
    session.add(library)
    session.flush()
    for role in (Role.ADMIN, Role.EDITOR, Role.STAFF):
        create_user(
            session,
            email=_email(role, spec),
            name=f"{role.value.title()} ({spec['name']})",
            password=DEMO_PASSWORD,
            role=role,
            library=library,
        )
    clubs = [
        create_club(
            session,
            library,
            name=name,
            slug=slug,
            description=description,
            language=spec["language"],
            from_name=f"{name} · {spec['name']}",
            from_email=f"{slug}@{spec['domain']}",
            reply_to=None,
            double_opt_in=True,
            tracking_consent_required=True,
        )
        for name, slug, description in spec["clubs"]
    ]
    _load_events_and_drafts(session, library, clubs, spec)
    for i in range(150):
        first = rng.choice(spec["first_names"])
        last = rng.choice(spec["last_names"])
        local = f"{first}.{last}".lower().replace(" ", "")
        subscriber = create_subscriber(
            session,
            library,
            f"{local}{i}@example.{'dk' if spec['language'] == 'da' else 'nl'}",
            first_name=first,
            last_name=last,
            language=spec["language"],
            attributes={"branch": rng.choice(spec["branches"])},
        )
        for club in rng.sample(clubs, rng.randint(1, 2)):
            if club.slug in ("familie", "gezin"):
                subscriber.attributes = {
                    **subscriber.attributes,
                    "children_ages": ", ".join(
                        str(rng.randint(1, 14)) for _ in range(rng.randint(1, 3))
                    ),
                }
            join_club(
                session,
                club,
                subscriber,
                source="demo",
                tracking_consent=rng.random() < 0.6,
                consent_given=rng.random() < 0.9,
            )


def _load_events_and_drafts(
    session: Session, library: Library, clubs: list, spec: dict
) -> None:
    """A few events around today, and a draft of each kind for the first clubs."""
    from datetime import datetime, time, timedelta

    from campaigns.services import create_campaign, create_event, local_to_utc

    by_slug = {club.slug: club for club in clubs}
    events = []
    for title, club_slug, days, venue in spec["events"]:
        day = datetime.now().date() + timedelta(days=days)
        starts = local_to_utc(datetime.combine(day, time(19, 0)), library.timezone)
        events.append(
            create_event(
                session,
                library,
                {
                    "title": title,
                    "description": spec["intro"].split("\n")[0],
                    "starts_at": starts,
                    "ends_at": starts + timedelta(hours=2),
                    "venue": venue,
                    "ticket_url": f"https://{library.domain}/tickets/{len(events)}",
                    "club_ids": [by_slug[club_slug].id],
                    "materials": (
                        [
                            {
                                "label": "Slides",
                                "url": f"https://{library.domain}/slides.pdf",
                                "tag": "slides",
                            }
                        ]
                        if days < 0
                        else []
                    ),
                },
            )
        )
    upcoming, past = events[0], events[-1]
    text = {"type": "text", "heading": None, "text": spec["intro"]}
    for kind, (subject, heading) in spec["drafts"].items():
        event = {"before_event": upcoming, "after_event": past}.get(kind)
        cards = [{"type": "event", "event_id": e.id} for e in events[:3]]
        blocks = [{**text, "heading": heading}]
        blocks += [{"type": "event", "event_id": event.id}] if event else cards
        if kind == "after_event":
            blocks.append(
                {
                    "type": "links",
                    "title": heading,
                    "links": [
                        {
                            "label": "Slides",
                            "url": f"https://{library.domain}/slides.pdf",
                            "tag": "slides",
                            "track": True,
                        }
                    ],
                }
            )
        club = by_slug[spec["events"][0][1]] if event else clubs[-1]
        create_campaign(
            session,
            club,
            None,
            {
                "kind": kind,
                "event_id": event.id if event else None,
                "subject": subject,
                "preheader": heading,
                "blocks": blocks,
            },
        )


# The links of the demo's sent newsletter: (path, tag, how often clicked) and
# their labels per language.
SENT_LINKS = (
    ("artikler/byens-rum", "article", 0.22),
    ("boeger/byens-rum", "book", 0.30),
    ("billetter/debat", "ticket", 0.18),
    ("podcast/oktober", "material", 0.08),
)
SENT_LABELS = {
    "da": ("Baggrundsartikel", "Bogliste", "Forsalg af billetter", "Podcast"),
    "nl": ("Achtergrondartikel", "Boekenlijst", "Voorverkoop kaartjes", "Podcast"),
}


def _load_sent_issue(
    session: Session,
    spec: dict,
    subject: str,
    heading: str,
    days_ago: int,
    rng: random.Random,
) -> None:
    """A newsletter the debate club got `days_ago`, with opens and clicks.

    The hits are made up (people at their own pace, Apple's proxy opening every
    tracked mail, a security scanner following every link of a few mails) and
    go through the same roll-up as real ones, so the statistics pages have
    something to show.
    """
    from datetime import timedelta

    from campaigns import sending
    from campaigns.models import CampaignStatus, ScheduleMode, SendLog, SendStatus
    from campaigns.services import create_campaign
    from tracking.models import EventKind, TrackedLink, TrackEvent

    library = session.scalar(select(Library).where(Library.slug == spec["slug"]))
    club = session.scalar(
        select(Club).where(Club.library_id == library.id, Club.slug == "debat")
    )
    links = [
        {"label": label, "url": f"https://{library.domain}/{path}", "tag": tag}
        for label, (path, tag, _rate) in zip(
            SENT_LABELS[spec["language"]], SENT_LINKS, strict=True
        )
    ]
    campaign = create_campaign(
        session,
        club,
        None,
        {
            "kind": "regular",
            "subject": subject,
            "preheader": heading,
            "blocks": [
                {"type": "text", "heading": heading, "text": spec["intro"]},
                {"type": "links", "title": heading, "links": links},
            ],
        },
    )
    started = utcnow().replace(minute=0, second=0, microsecond=0)
    started -= timedelta(days=days_ago)
    sending.schedule(campaign, ScheduleMode.NOW, now=started)
    sending.start(session, campaign, started, whole=True)
    rows = session.scalars(select(SendLog).where(SendLog.campaign_id == campaign.id))
    sends = list(rows)
    for n, row in enumerate(sends):
        row.status, row.attempts = SendStatus.SENT, 1
        row.sent_at = started + timedelta(seconds=2 * n)
    sending.change_status(campaign, CampaignStatus.SENT)
    campaign.sent_at = started + timedelta(seconds=2 * len(sends))
    tracked = {
        link.position: link.id
        for link in session.scalars(
            select(TrackedLink).where(TrackedLink.campaign_id == campaign.id)
        )
    }
    events = []
    now = utcnow()

    def hit(row, kind, link_id, at, human=True, reason="human"):
        if at < now - timedelta(minutes=1):
            events.append(
                TrackEvent(
                    campaign_id=campaign.id,
                    send_id=row.id,
                    link_id=link_id,
                    kind=kind,
                    occurred_at=at,
                    human=human,
                    reason=reason,
                )
            )

    for row in (r for r in sends if r.tracked):
        if rng.random() < 0.25:  # Apple Mail: the proxy opens it on arrival
            hit(
                row,
                EventKind.OPEN,
                None,
                row.sent_at + timedelta(minutes=1),
                False,
                "apple_privacy_proxy",
            )
        if rng.random() < 0.08:  # a security gateway follows every link at once
            for position in tracked:
                hit(
                    row,
                    EventKind.CLICK,
                    tracked[position],
                    row.sent_at + timedelta(seconds=30 + position / 10),
                    True,
                    "human",
                )
            continue
        if rng.random() < 0.55:
            opened = row.sent_at + timedelta(hours=rng.expovariate(1 / 9))
            hit(row, EventKind.OPEN, None, opened)
            for position, (_path, _tag, rate) in enumerate(SENT_LINKS, start=1):
                if rng.random() < rate:
                    at = opened + timedelta(minutes=rng.uniform(0.5, 20))
                    hit(row, EventKind.CLICK, tracked[position], at)
    session.add_all(events)
    session.commit()
