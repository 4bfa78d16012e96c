"""The bulk SMTP client against a real SMTP server (aiosmtpd), with and without
PIPELINING, with refusals, and with a server that goes away."""

import pytest

from campaigns.smtp import Envelope, SmtpConnection, SmtpError, dot_stuff


def _envelopes(recipients):
    return [
        Envelope(
            key=n,
            sender=f"bounces+{n}.abc@bounce.example",
            recipient=rcpt,
            data=(
                f"From: a@example.org\r\nTo: {rcpt}\r\nSubject: n{n}\r\n\r\n"
                ".leading dot\r\nline\r\n..two dots\r\n"
            ).encode(),
        )
        for n, rcpt in enumerate(recipients)
    ]


@pytest.mark.parametrize("pipelining", [True, False])
def test_every_message_arrives_once_in_order_on_one_connection(smtp_server, pipelining):
    smtp_server.pipelining = pipelining
    conn = SmtpConnection("127.0.0.1", smtp_server.port)
    envelopes = _envelopes([f"m{n}@example.org" for n in range(25)])

    results = list(conn.send_many(envelopes))
    conn.close()

    assert ("PIPELINING" in conn.extensions) is pipelining
    assert [r.key for r in results] == list(range(25))
    assert all(r.accepted for r in results)
    assert smtp_server.sessions == 1
    assert [rcpts for _f, rcpts, _d in smtp_server.received] == [
        [f"m{n}@example.org"] for n in range(25)
    ]
    first = smtp_server.messages[0]
    assert first["Subject"] == "n0"
    assert first.get_content().splitlines()[0] == ".leading dot"
    assert "..two dots" in first.get_content()
    assert smtp_server.received[3][0] == "bounces+3.abc@bounce.example"


@pytest.mark.parametrize("pipelining", [True, False])
def test_refusals_are_reported_per_message_and_the_rest_goes_on(
    smtp_server, pipelining
):
    smtp_server.pipelining = pipelining
    smtp_server.refuse = {
        "full": "452 4.2.2 Mailbox full",
        "gone": "550 5.1.1 No such user",
    }
    recipients = ["a@example.org", "full@example.org", "gone@example.org", "b@x.org"]
    conn = SmtpConnection("127.0.0.1", smtp_server.port)

    results = {r.key: r for r in conn.send_many(_envelopes(recipients))}
    conn.close()

    assert results[0].accepted and results[3].accepted
    assert results[1].code == 452 and not results[1].permanent
    assert results[2].code == 550 and results[2].permanent
    assert "No such user" in results[2].text
    assert [rcpts for _f, rcpts, _d in smtp_server.received] == [
        ["a@example.org"],
        ["b@x.org"],
    ]


def test_addresses_that_could_inject_commands_are_refused_unsent(smtp_server):
    conn = SmtpConnection("127.0.0.1", smtp_server.port)
    bad = Envelope(1, "a@example.org", "x@example.org>\r\nRCPT TO:<y@example.org", b"x")
    good = _envelopes(["ok@example.org"])[0]

    results = list(conn.send_many([bad, good]))
    conn.close()

    assert results[0].code == 553 and results[0].permanent
    assert results[1].accepted
    assert [rcpts for _f, rcpts, _d in smtp_server.received] == [["ok@example.org"]]


def test_a_server_that_is_down_is_a_temporary_error():
    conn = SmtpConnection("127.0.0.1", 1, timeout=2)
    with pytest.raises(SmtpError, match="cannot reach"):
        list(conn.send_many(_envelopes(["a@example.org"])))


def test_a_server_that_goes_away_mid_send_raises_after_the_known_verdicts(
    smtp_server,
):
    conn = SmtpConnection("127.0.0.1", smtp_server.port)
    seen = []
    with pytest.raises(SmtpError):
        for result in conn.send_many(_envelopes([f"m{n}@x.org" for n in range(10)])):
            seen.append(result)
            if len(seen) == 3:
                smtp_server.stop()
    assert [r.key for r in seen] == [0, 1, 2]
    assert not conn.is_open


def test_dot_stuffing():
    assert dot_stuff(b".a\r\nb\r\n.c") == b"..a\r\nb\r\n..c\r\n"
    assert dot_stuff(b"a\r\n") == b"a\r\n"
    assert dot_stuff(b"a\r\n.\r\n.\r\n..") == b"a\r\n..\r\n..\r\n...\r\n"
    assert dot_stuff(b".") == b"..\r\n"
    assert dot_stuff(b"") == b"\r\n"


def test_dot_stuffing_is_doubling_every_line_start_dot():
    import random

    rng = random.Random(3)
    for _ in range(5000):
        data = bytes(rng.choice(b"\r\n.a") for _ in range(rng.randrange(0, 40)))
        expected = (b"." if data.startswith(b".") else b"") + data.replace(
            b"\r\n.", b"\r\n.."
        )
        if not expected.endswith(b"\r\n"):
            expected += b"\r\n"
        assert dot_stuff(data) == expected
