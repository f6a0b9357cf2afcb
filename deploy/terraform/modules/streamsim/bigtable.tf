# The tables are schemas/layout.py's FAMILIES, kept by hand: tests/deploy/test_terraform_contract.py
# parses this file and fails when a table, a family or a GC rule differs from the layout.
# A family's rule: max_version keeps the newest N cells; max_age (Go duration) drops older ones;
# both together are a union (a cell goes when either says so), as provision.gc_rule builds it.
locals {
  tables = {
    users = {
      s = { max_version = 1 }
      e = { max_version = 1, max_age = "720h" }
      a = { max_version = 1 }
    }
    items = {
      n = { max_version = 1 }
      d = { max_version = 1 }
      q = { max_version = 1 }
      m = { max_version = 1 }
      x = { max_version = 1, max_age = "720h" }
      # Trending counters per minute, hour and day (schemas/trending.py).
      tm = { max_version = 1, max_age = "2h" }
      th = { max_version = 1, max_age = "29h" }
      td = { max_version = 1, max_age = "217h" }
    }
    contributions = {
      c = { max_version = 1 }
    }
    similarities = {
      k = { max_version = 3 }
      b = { max_version = 3 }
    }
    meta = {
      g = { max_version = 10 }
      p = { max_version = 1 }
      k = { max_version = 3 }
      l = { max_version = 1, max_age = "168h" }
      f = { max_version = 1 }
      # Trending boards per window (schemas/trending.py).
      t15m = { max_version = 1, max_age = "2h" }
      t1h  = { max_version = 1, max_age = "2h" }
      t24h = { max_version = 1, max_age = "25h" }
    }
    recent = {
      o = { max_version = 64 }
      p = { max_version = 64 }
    }
    sessions = {
      h = { max_version = 5000 }
      o = { max_version = 64 }
    }
  }

  families = merge([
    for table, families in local.tables : {
      for family, rule in families : "${table}/${family}" => {
        table       = table
        family      = family
        max_version = rule.max_version
        max_age     = try(rule.max_age, null)
      }
    }
  ]...)

  cluster_id = "${var.bigtable_instance}-c1"
  # The fold's conditional writes (CheckAndMutateRow) need single-cluster routing with
  # transactional writes once the instance has a second cluster; every runtime uses it.
  app_profile = "streamsim"
}

resource "google_bigtable_instance" "this" {
  # checkov:skip=CKV_GCP_85: Google-managed encryption by default; a shop that needs CMEK sets kms_key_name
  project             = var.project
  name                = var.bigtable_instance
  display_name        = "streamsim"
  deletion_protection = var.deletion_protection
  labels              = var.labels

  cluster {
    cluster_id   = local.cluster_id
    zone         = var.bigtable_zone
    storage_type = "SSD"
    autoscaling_config {
      min_nodes  = var.bigtable_min_nodes
      max_nodes  = var.bigtable_max_nodes
      cpu_target = var.bigtable_cpu_target
    }
  }
}

resource "google_bigtable_table" "table" {
  for_each            = local.tables
  project             = var.project
  instance_name       = google_bigtable_instance.this.name
  name                = "${var.prefix}${each.key}"
  deletion_protection = var.deletion_protection ? "PROTECTED" : "UNPROTECTED"

  dynamic "column_family" {
    for_each = each.value
    content {
      family = column_family.key
    }
  }
}

resource "google_bigtable_gc_policy" "family" {
  for_each      = local.families
  project       = var.project
  instance_name = google_bigtable_instance.this.name
  table         = google_bigtable_table.table[each.value.table].name
  column_family = each.value.family
  # A GC policy cannot be deleted on a replicated table; abandoning it keeps `destroy` working.
  deletion_policy = "ABANDON"
  gc_rules = (
    each.value.max_age == null
    ? jsonencode({ rules = [{ max_version = each.value.max_version }] })
    : jsonencode({ mode = "union", rules = [{ max_version = each.value.max_version }, { max_age = each.value.max_age }] })
  )
}

resource "google_bigtable_app_profile" "streamsim" {
  project        = var.project
  instance       = google_bigtable_instance.this.name
  app_profile_id = local.app_profile
  description    = "streamsim runtimes: single-cluster routing, transactional writes (CheckAndMutateRow)"

  single_cluster_routing {
    cluster_id                 = local.cluster_id
    allow_transactional_writes = true
  }
  ignore_warnings = true
}
