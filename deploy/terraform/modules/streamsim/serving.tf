resource "google_cloud_run_v2_service" "serving" {
  project             = var.project
  name                = "${var.prefix}serving"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false
  labels              = var.labels

  template {
    service_account = google_service_account.serving.email
    # One serving process per instance; Cloud Run scales instances, and aiohttp serves
    # many requests at once in one process.
    max_instance_request_concurrency = 80
    scaling {
      min_instance_count = var.serving_min_instances
      max_instance_count = var.serving_max_instances
    }
    containers {
      image = var.serving_image
      args = [
        "--project", var.project, "--instance", google_bigtable_instance.this.name, "--prefix", var.prefix,
        "--app-profile-id", google_bigtable_app_profile.streamsim.app_profile_id, "--workers", "1",
      ]
      ports {
        container_port = 8080
      }
      resources {
        limits = { cpu = "1", memory = "1Gi" }
        # Instance-based billing: no per-request fee, and the poll loop keeps running.
        cpu_idle          = var.serving_min_instances == 0
        startup_cpu_boost = true
      }
      dynamic "env" {
        for_each = var.weights == "" ? {} : { STREAMSIM_WEIGHTS = var.weights }
        content {
          name  = env.key
          value = env.value
        }
      }
      # /healthz, not /readyz: /readyz is 503 until the first refresh has published a
      # generation, and a fresh deployment must start before it.
      startup_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds    = 2
        failure_threshold = 30
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
  }

  # The tables must exist before the first instance reads them.
  depends_on = [google_bigtable_gc_policy.family, google_bigtable_instance_iam_member.serving_reads_bigtable]
}

resource "google_cloud_run_v2_service_iam_member" "public" {
  count    = var.serving_public ? 1 : 0
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.serving.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
