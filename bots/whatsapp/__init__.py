"""WhatsApp (Cloud API): a webhook the web server mounts (`switchboard serve`, when WHATSAPP_ACCESS_TOKEN is
set); there is no `switchboard bot whatsapp`, as the Cloud API delivers messages over HTTP only."""

from bots.whatsapp.webhook import WEBHOOK_PATH, WhatsAppWebhook

__all__ = ["WEBHOOK_PATH", "WhatsAppWebhook"]
