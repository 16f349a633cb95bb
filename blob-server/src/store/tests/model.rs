//! Random sequences of operations (with reopens) checked against a simple in-memory model:
//! what each app can read, its usage, its objects, and that exactly the held large content
//! has files on disk (garbage collection is exact).

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

/// Sizes on both sides of `small_max` (1 KiB) and of the 4 KiB chunk.
const SIZES: [usize; 6] = [0, 10, 1024, 1025, 5000, 9000];
const APPS: [&str; 2] = ["a", "b"];

#[derive(Clone, Debug)]
enum Step {
    Write { app: usize, c: usize },
    DeleteBlob { app: usize, c: usize },
    Put { app: usize, key: u8, c: usize },
    DeleteObject { app: usize, key: u8 },
    Read { app: usize, c: usize },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let app = 0..APPS.len();
    let c = 0..SIZES.len();
    prop_oneof![
        3 => (app.clone(), c.clone()).prop_map(|(app, c)| Step::Write { app, c }),
        2 => (app.clone(), c.clone()).prop_map(|(app, c)| Step::DeleteBlob { app, c }),
        3 => (app.clone(), 0..4u8, c.clone()).prop_map(|(app, key, c)| Step::Put { app, key, c }),
        2 => (app.clone(), 0..4u8).prop_map(|(app, key)| Step::DeleteObject { app, key }),
        2 => (app, c).prop_map(|(app, c)| Step::Read { app, c }),
        1 => Just(Step::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    direct: HashSet<(usize, usize)>,
    objects: HashMap<(usize, u8), usize>,
}

impl Model {
    fn holds(&self, app: usize) -> HashSet<usize> {
        let mut h: HashSet<usize> = self
            .direct
            .iter()
            .filter(|(a, _)| *a == app)
            .map(|(_, c)| *c)
            .collect();
        h.extend(
            self.objects
                .iter()
                .filter(|((a, _), _)| *a == app)
                .map(|(_, c)| *c),
        );
        h
    }
}

fn data(c: usize) -> Vec<u8> {
    content(c as u64 + 1000, SIZES[c])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(steps in proptest::collection::vec(step(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        let mut m = Model::default();
        for st in steps {
            match st {
                Step::Write { app, c } => {
                    prop_assert_eq!(s.write(APPS[app], &data(c)).unwrap(), sha(&data(c)));
                    m.direct.insert((app, c));
                }
                Step::DeleteBlob { app, c } => {
                    let r = s.delete_blob(APPS[app], &sha(&data(c)));
                    if m.direct.remove(&(app, c)) {
                        prop_assert!(r.is_ok());
                    } else {
                        prop_assert!(matches!(r, Err(Error::NotFound)));
                    }
                }
                Step::Put { app, key, c } => {
                    let info = s
                        .put_object(APPS[app], "bk", &key.to_string(), ObjectOptions::default(), &data(c))
                        .unwrap();
                    prop_assert_eq!(info.size, SIZES[c] as u64);
                    m.objects.insert((app, key), c);
                }
                Step::DeleteObject { app, key } => {
                    let r = s.delete_object(APPS[app], "bk", &key.to_string());
                    if m.objects.remove(&(app, key)).is_some() {
                        prop_assert!(r.is_ok());
                    } else {
                        prop_assert!(matches!(r, Err(Error::NotFound)));
                    }
                }
                Step::Read { app, c } => {
                    let r = read_all(&s, APPS[app], &sha(&data(c)));
                    if m.holds(app).contains(&c) {
                        prop_assert_eq!(r.unwrap(), data(c));
                    } else {
                        prop_assert!(matches!(r, Err(Error::NotFound)));
                    }
                }
                Step::Reopen => {
                    s.close();
                    s = open(dir.path());
                }
            }
            for (i, app) in APPS.iter().enumerate() {
                let want: u64 = m.holds(i).iter().map(|&c| SIZES[c] as u64).sum();
                prop_assert_eq!(s.usage(app).used, want);
                prop_assert_eq!(s.usage(app).reserved, 0);
                let keys = s.list_keys(app, "bk", None, 10).unwrap();
                let mut want_keys: Vec<String> =
                    m.objects.keys().filter(|(a, _)| *a == i).map(|(_, k)| k.to_string()).collect();
                want_keys.sort();
                prop_assert_eq!(keys, want_keys);
            }
            let large: HashSet<usize> = (0..APPS.len())
                .flat_map(|a| m.holds(a))
                .filter(|&c| SIZES[c] > 1024)
                .collect();
            prop_assert_eq!(count_files(&s.paths().objects), large.len());
        }
    }
}
