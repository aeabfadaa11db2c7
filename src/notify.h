/*-------------------------------------------------------------------------
 *
 * notify.h
 *		Notification channels and payloads of the canary extension.
 *
 * src/notify.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_NOTIFY_H
#define CANARY_NOTIFY_H

/* Channel for rollout and stable version changes; payload is JSON. */
#define CANARY_CHANNEL_STATE "canary"

/* Channel for new rows of canary.events; payload is the event id. */
#define CANARY_CHANNEL_EVENTS "canary_events"

#endif							/* CANARY_NOTIFY_H */
