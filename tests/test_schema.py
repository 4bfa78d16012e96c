from flask_migrate import downgrade
from sqlalchemy import inspect

from klubpost import create_app


def test_migrations_make_every_table_the_models_declare(app, db):
    tables = set(inspect(db.engine).get_table_names())
    assert set(db.metadata.tables) <= tables


def test_app_refuses_to_serve_a_database_with_pending_migrations(app_config, tmp_path):
    app_config = {
        **app_config,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
    }
    app = create_app(app_config)
    response = app.test_client().get("/login")
    assert response.status_code == 503
    assert "klubpost db upgrade" in response.get_data(as_text=True)


def test_cli_commands_refuse_pending_migrations(app_config, tmp_path):
    app_config = {
        **app_config,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
    }
    app = create_app(app_config)
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code != 0
    assert "klubpost db upgrade" in result.output


def test_downgrade_and_upgrade_again(app, db, runner):
    with app.app_context():
        downgrade(revision="base")
        assert "club" not in inspect(db.engine).get_table_names()
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "club" in inspect(db.engine).get_table_names()


def test_demo_loads_libraries_clubs_members_and_prints_logins(runner, db):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert "admin@herning.demo.klubpost.dk" in result.output
    assert "editor@utrecht.demo.klubpost.nl" in result.output
    from sqlalchemy import func, select

    from subscribers.models import Club, Subscriber

    assert db.session.scalar(select(func.count()).select_from(Club)) == 6
    assert 200 <= db.session.scalar(select(func.count()).select_from(Subscriber)) <= 500
    again = runner.invoke(args=["demo"])
    assert "already loaded" in again.output


def test_the_demo_has_a_sent_newsletter_with_figures_to_look_at(runner, db):
    from sqlalchemy import select

    from campaigns.models import Campaign, CampaignStatus
    from tracking.models import CampaignStats, TrackCount

    assert runner.invoke(args=["demo"]).exit_code == 0
    sent = db.session.scalars(
        select(Campaign).where(Campaign.status == CampaignStatus.SENT)
    ).all()
    assert len(sent) == 4  # two for the debate club of each library
    for campaign in sent:
        stats = db.session.get(CampaignStats, campaign.id)
        assert stats.delivered == stats.recipients > 0
        assert 0 < stats.unique_opens_human <= stats.tracked < stats.delivered
        assert stats.unique_clicks_human > 0 and stats.clicks_machine > 0
        reasons = set(
            db.session.scalars(
                select(TrackCount.reason).where(TrackCount.campaign_id == campaign.id)
            )
        )
        assert {"human", "apple_privacy_proxy", "scanner_burst"} <= reasons
