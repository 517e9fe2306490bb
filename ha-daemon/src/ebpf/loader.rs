//! Loads the XDP object into the kernel and attaches it to interfaces.
use std::{ffi::CString, fmt};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData},
    programs::{
        ProgramError, TestRun, TestRunOptions, TestRunResult, Xdp, XdpMode, xdp::XdpLinkId,
    },
};
use ha_common::{AdvertKey, AdvertRecord, MAP_ADVERTS, PROG_XDP};

use super::object::OBJECT;

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(
        "this ha-daemon binary was built without the XDP program; run `cargo xtask build-ebpf` and rebuild it"
    )]
    NotBuilt,
    #[error(
        "loading the XDP object into the kernel failed (needs root, or CAP_BPF with CAP_NET_ADMIN): {0}"
    )]
    Load(#[source] aya::EbpfError),
    #[error("the XDP object has no program {PROG_XDP:?}; was it built from this tree?")]
    MissingProgram,
    #[error("the XDP object has no map {0:?}; was it built from this tree?")]
    MissingMap(&'static str),
    #[error("verifying the XDP program {PROG_XDP:?} failed: {0}")]
    Verify(#[source] ProgramError),
    #[error("interface {0:?} does not exist in this network namespace")]
    NoInterface(String),
    #[error(
        "attaching XDP to interface {interface:?} failed in driver mode ({driver}) and in generic mode ({generic})"
    )]
    Attach {
        interface: String,
        driver: Box<ProgramError>,
        generic: Box<ProgramError>,
    },
    #[error("reading map {name:?}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("BPF_PROG_TEST_RUN of {PROG_XDP:?} failed: {0}")]
    TestRun(#[source] ProgramError),
}

/// How XDP ended up attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver, before an skb exists (the fast path).
    Driver,
    /// After the skb is built; works on every interface.
    Generic,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Driver => "driver",
            AttachMode::Generic => "generic",
        })
    }
}

/// One interface the program is attached to; detached when the program is dropped.
#[derive(Debug)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    pub mode: AttachMode,
    _link: XdpLinkId,
}

/// The loaded XDP program and its maps.
pub struct XdpProgram {
    ebpf: Ebpf,
    attachments: Vec<Attachment>,
}

impl XdpProgram {
    /// Loads the object embedded in this binary.
    pub fn load() -> Result<Self, LoaderError> {
        Self::load_bytes(OBJECT.ok_or(LoaderError::NotBuilt)?)
    }

    /// Loads an object from bytes (8-byte aligned) and verifies the program.
    pub fn load_bytes(bytes: &[u8]) -> Result<Self, LoaderError> {
        let mut ebpf = EbpfLoader::new().load(bytes).map_err(LoaderError::Load)?;
        if ebpf.map(MAP_ADVERTS).is_none() {
            return Err(LoaderError::MissingMap(MAP_ADVERTS));
        }
        program_mut(&mut ebpf)?
            .load()
            .map_err(LoaderError::Verify)?;
        Ok(Self {
            ebpf,
            attachments: Vec::new(),
        })
    }

    /// Attaches to `interface`, in driver mode where the driver supports it and
    /// in generic mode otherwise.
    pub fn attach(&mut self, interface: &str) -> Result<&Attachment, LoaderError> {
        let ifindex = ifindex(interface)?;
        let prog = program_mut(&mut self.ebpf)?;
        let (link, mode) = match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(link) => (link, AttachMode::Driver),
            Err(driver) => match prog.attach_to_if_index(ifindex, XdpMode::Skb) {
                Ok(link) => (link, AttachMode::Generic),
                Err(generic) => {
                    return Err(LoaderError::Attach {
                        interface: interface.to_owned(),
                        driver: Box::new(driver),
                        generic: Box::new(generic),
                    });
                }
            },
        };
        self.attachments.push(Attachment {
            interface: interface.to_owned(),
            ifindex,
            mode,
            _link: link,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Runs the program once per `repeat` over `frame` with BPF_PROG_TEST_RUN
    /// (the kernel reports the mean time per run).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRunResult, LoaderError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_XDP)
            .ok_or(LoaderError::MissingProgram)?
            .try_into()
            .map_err(|_| LoaderError::MissingProgram)?;
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: repeat.max(1),
            ..TestRunOptions::new()
        })
        .map_err(LoaderError::TestRun)
    }

    /// The per-sender advert map.
    pub fn adverts_map(&self) -> Result<HashMap<&MapData, AdvertKey, AdvertRecord>, LoaderError> {
        let map = self
            .ebpf
            .map(MAP_ADVERTS)
            .ok_or(LoaderError::MissingMap(MAP_ADVERTS))?;
        HashMap::try_from(map).map_err(|source| LoaderError::Map {
            name: MAP_ADVERTS,
            source,
        })
    }

    /// Every advert entry the program has recorded.
    pub fn adverts(&self) -> Result<Vec<super::adverts::AdvertEntry>, LoaderError> {
        super::adverts::collect(&self.adverts_map()?).map_err(|source| LoaderError::Map {
            name: MAP_ADVERTS,
            source,
        })
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoaderError> {
    ebpf.program_mut(PROG_XDP)
        .ok_or(LoaderError::MissingProgram)?
        .try_into()
        .map_err(|_| LoaderError::MissingProgram)
}

/// Index of `interface` in the calling thread's network namespace.
pub fn ifindex(interface: &str) -> Result<u32, LoaderError> {
    let name = CString::new(interface).map_err(|_| LoaderError::NoInterface(interface.into()))?;
    // SAFETY: valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(LoaderError::NoInterface(interface.into())),
        i => Ok(i),
    }
}
