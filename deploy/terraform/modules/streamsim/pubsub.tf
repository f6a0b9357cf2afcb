# The Pub/Sub names of schemas.layout.PubSubNames.for_prefix (checked by tests/deploy/test_terraform_contract.py).
locals {
  events_topic             = "${var.prefix}events"
  events_subscription      = "${var.prefix}events-fold"
  dead_letter_topic        = "${var.prefix}events-dead-letter"
  dead_letter_subscription = "${var.prefix}events-dead-letter-keep"
  # Pub/Sub forwards undeliverable messages as this service agent.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

data "google_project" "this" {
  project_id = var.project
}

resource "google_pubsub_topic" "events" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption by default; a shop that needs CMEK adds kms_key_name
  project = var.project
  name    = local.events_topic
  labels  = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption by default; a shop that needs CMEK adds kms_key_name
  project = var.project
  name    = local.dead_letter_topic
  labels  = var.labels
}

resource "google_pubsub_subscription" "events" {
  project = var.project
  name    = local.events_subscription
  topic   = google_pubsub_topic.events.id
  labels  = var.labels

  # streamsim.runtime.provision.ACK_DEADLINE_SECONDS: long enough to fold a bundle.
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  # Never delete the subscription for inactivity (a paused fold must find its backlog).
  expiration_policy {
    ttl = ""
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  # Contract breaches are dead-lettered by the fold itself with a reason; this catches a
  # message that keeps failing delivery (e.g. one that crashes the small profile's fold).
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = 10
  }
}

resource "google_pubsub_subscription" "dead_letter_keep" {
  project = var.project
  name    = local.dead_letter_subscription
  topic   = google_pubsub_topic.dead_letter.id
  labels  = var.labels

  # A topic with no subscription drops what is published to it: this one keeps dead letters.
  message_retention_duration = "604800s"
  retain_acked_messages      = false
  expiration_policy {
    ttl = ""
  }
}

# What the Pub/Sub service agent needs to dead-letter: publish on the dead-letter topic,
# and subscribe on the source subscription (to acknowledge what it forwarded).
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  project = var.project
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_forwarded" {
  project      = var.project
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
