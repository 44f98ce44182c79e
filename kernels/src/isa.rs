//! Which instruction set the kernels use, picked from the CPU at run time.

use crate::KernelError;

/// A kernel path. All of them give bit-identical results (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust: compiles on any target (aarch64 phones included).
    Portable,
    /// AVX2 + F16C: every x86-64 server of the last decade (AMD EPYC Zen 2/3).
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`): Intel Xeon since Cascade Lake, AMD Zen 4.
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the path (asked per matmul and per attention
    /// block, so the answer is looked up once).
    pub fn available(self) -> bool {
        static HAS: std::sync::OnceLock<[bool; 3]> = std::sync::OnceLock::new();
        HAS.get_or_init(|| Isa::ALL.map(|isa| isa.missing().is_none()))[self as usize]
    }

    /// The first CPU feature the path needs and this CPU lacks.
    fn missing(self) -> Option<&'static str> {
        #[cfg(target_arch = "x86_64")]
        {
            let need: &[(&'static str, bool)] = match self {
                Isa::Portable => &[],
                Isa::Avx2 => &[
                    ("avx2", std::arch::is_x86_feature_detected!("avx2")),
                    ("f16c", std::arch::is_x86_feature_detected!("f16c")),
                ],
                Isa::Avx512 => &[
                    ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
                    ("avx512bw", std::arch::is_x86_feature_detected!("avx512bw")),
                    ("avx512vl", std::arch::is_x86_feature_detected!("avx512vl")),
                    ("avx512vnni", std::arch::is_x86_feature_detected!("avx512vnni")),
                    ("f16c", std::arch::is_x86_feature_detected!("f16c")),
                ],
            };
            need.iter().find(|(_, has)| !has).map(|(name, _)| *name)
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self {
            Isa::Portable => None,
            _ => Some("x86-64"),
        }
    }

    /// The fastest path this CPU runs.
    pub fn detect() -> Isa {
        [Isa::Avx512, Isa::Avx2].into_iter().find(|i| i.available()).unwrap_or(Isa::Portable)
    }

    /// Every path this CPU runs, portable first.
    pub fn available_all() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.available()).collect()
    }

    /// Parses a path name; `auto` is [`Isa::detect`]. A named path this CPU
    /// cannot run is an error rather than a silent fallback, so a test that
    /// forces a path really runs it.
    pub fn parse(s: &str) -> Result<Isa, KernelError> {
        let isa = match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => return Ok(Isa::detect()),
            "portable" | "scalar" => Isa::Portable,
            "avx2" => Isa::Avx2,
            "avx512" | "avx512vnni" => Isa::Avx512,
            _ => return Err(KernelError::UnknownIsa(s.to_string())),
        };
        match isa.missing() {
            None => Ok(isa),
            Some(feature) => Err(KernelError::Unavailable(isa.name(), feature)),
        }
    }

    /// `OURO_KERNEL` (auto, portable, avx2, avx512), or [`Isa::detect`].
    pub fn from_env() -> Result<Isa, KernelError> {
        match std::env::var("OURO_KERNEL") {
            Ok(v) => Isa::parse(&v),
            Err(_) => Ok(Isa::detect()),
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_refuses_unknown_ones() {
        assert_eq!(Isa::parse("portable").unwrap(), Isa::Portable);
        assert_eq!(Isa::parse("auto").unwrap(), Isa::detect());
        assert!(matches!(Isa::parse("neon9000"), Err(KernelError::UnknownIsa(_))));
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()).is_ok(), isa.available());
        }
    }

    #[test]
    fn portable_is_always_there() {
        assert!(Isa::available_all().contains(&Isa::Portable));
        assert!(Isa::detect().available());
    }
}
