"""Microsoft Teams: POST /teams/messages on `switchboard serve` (the Bot Framework delivers activities over
HTTP only), mounted when TEAMS_APP_ID and TEAMS_APP_PASSWORD are set.

auth        Teams' bearer tokens checked (PyJWT: signing keys, issuer, app id); the bot's own token (httpx)
connector   the Bot Connector REST API: send, reply in a thread, update
activities  incoming activities (validated) and outgoing ones: messages, streaming, citations, cards
channel     where a reply goes, post-then-update, and Teams' streaming protocol in personal chats
bot         what it answers (chats, @mentions, followed channel threads) and 👍/👎
webhook     the framework-free handler the web server mounts
"""

from bots.teams.webhook import MESSAGES_PATH, TeamsWebhook

__all__ = ["MESSAGES_PATH", "TeamsWebhook"]
