use proptest::prelude::*;

use super::*;

fn config(quota_cpu: &str, quota_memory: &str) -> Config {
    let text = include_str!("../../../docs/examples/config.yaml")
        .replace("repositories:\n", "sizing: {mode: auto, prometheusUrl: 'http://prometheus:9090'}\nrepositories:\n");
    let mut config = Config::from_yaml(&text).unwrap_or_else(|e| panic!("{e}"));
    config.quota.cpu = crate::config::types::Cpu::parse(quota_cpu).unwrap_or_else(|e| panic!("{e}"));
    config.quota.memory = crate::config::types::Bytes::parse(quota_memory).unwrap_or_else(|e| panic!("{e}"));
    config
}

fn usage(namespace: &str, service: &str, cores: f64, mib: f64) -> Usage {
    Usage { namespace: namespace.into(), service: service.into(), cpu_cores: cores, memory_bytes: mib * MIB }
}

#[test]
fn usage_outside_previews_and_configured_services_is_ignored() {
    let config = config("4", "8Gi");
    let proposals = propose(
        &config,
        &[
            usage("preview-shop-pr-7", "web", 0.2, 200.0),
            usage("preview-shop-pr-x", "web", 9.0, 9000.0),
            usage("preview-platform-pr-1", "web", 9.0, 9000.0),
            usage("default", "web", 9.0, 9000.0),
            usage("preview-shop-pr-7", "sidecar", 9.0, 9000.0),
            usage("preview-shop-pr-8", "api", f64::NAN, 1.0),
        ],
    );
    assert_eq!(proposals.len(), 1, "{proposals:?}");
    let web = proposals[&("acme/shop".to_owned(), "web".to_owned())];
    assert_eq!((web.cpu_millis, web.memory_bytes), (240, (240.0 * MIB) as u64));
}

#[test]
fn a_proposal_above_a_limit_is_capped_at_it() {
    let config = config("4", "8Gi");
    // web's limits are 1 core and 1Gi.
    let proposals = propose(&config, &[usage("preview-shop-pr-1", "web", 1.5, 1500.0)]);
    let repo = &config.repositories[0];
    let sized = for_preview(&config, repo, SizingMode::Auto, &proposals, &["web".to_owned()])
        .unwrap_or_else(|| panic!("sized"));
    assert_eq!((sized.services[0].cpu_millis, sized.services[0].memory_bytes), (1000, (1024.0 * MIB) as u64));
}

proptest! {
    /// Whatever the usage and the quota: no size below the floor or above the ceiling, and
    /// the preview's requests (sized and configured) within the quota, or no sizing at all.
    #[test]
    fn sizes_stay_within_floor_ceiling_and_quota(
        quota_millis in 50u32..8000,
        quota_mib in 64u32..16384,
        used in proptest::collection::vec((0.0f64..6.0, 0.0f64..9000.0), 3),
        pick in proptest::collection::vec(any::<bool>(), 3),
    ) {
        let config = config(&format!("{quota_millis}m"), &format!("{quota_mib}Mi"));
        let names = ["web", "api", "worker"];
        let usage: Vec<Usage> =
            names.iter().zip(&used).map(|(n, (c, m))| usage("preview-shop-pr-1", n, *c, *m)).collect();
        let proposals = propose(&config, &usage);
        let services: Vec<String> = names.iter().zip(&pick).filter(|(_, p)| **p).map(|(n, _)| (*n).to_owned()).collect();
        let repo = &config.repositories[0];
        if let Some(sized) = for_preview(&config, repo, SizingMode::Auto, &proposals, &services) {
            let (floor, ceiling) = (&config.sizing.floor, &config.sizing.ceiling);
            let mut cpu = 0.0;
            let mut memory = 0.0;
            for service in repo.services.iter().filter(|s| services.contains(&s.name)) {
                let n = f64::from(service.resources.replicas);
                match sized.services.iter().find(|z| z.name == service.name) {
                    Some(z) => {
                        prop_assert!(z.cpu_millis as f64 >= floor.cpu.cores() * 1000.0 - 1e-9);
                        prop_assert!(z.cpu_millis as f64 <= ceiling.cpu.cores() * 1000.0);
                        prop_assert!(z.memory_bytes as f64 >= floor.memory.bytes() - 1.0);
                        prop_assert!(z.memory_bytes as f64 <= ceiling.memory.bytes());
                        cpu += z.cpu_millis as f64 * n;
                        memory += z.memory_bytes as f64 * n;
                    }
                    None => {
                        cpu += service.resources.requests.cpu.cores() * 1000.0 * n;
                        memory += service.resources.requests.memory.bytes() * n;
                    }
                }
            }
            prop_assert!(cpu <= f64::from(quota_millis) + 1e-6, "cpu {cpu} > {quota_millis}");
            prop_assert!(memory <= f64::from(quota_mib) * MIB + 1.0, "memory {memory} > {quota_mib}Mi");
        }
    }
}
