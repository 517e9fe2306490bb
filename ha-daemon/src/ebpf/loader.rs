//! Loads the XDP object into the kernel, pins its maps, attaches it to
//! interfaces.
use std::{borrow::Cow, fmt, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{
        ProgramError, TestRun, TestRunOptions, TestRunResult, Xdp, XdpMode, xdp::XdpLinkId,
    },
};
use ha_common::{ALL_MAPS, MAP_EVENTS, PROG_XDP};

use super::{
    maps::{Maps, MapsError},
    object::OBJECT,
    pin,
};

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(
        "this ha-daemon binary was built without the XDP program; run `cargo xtask build-ebpf` and rebuild it"
    )]
    NotBuilt,
    #[error("preparing the pin dir: {0}")]
    Pin(#[source] std::io::Error),
    #[error(
        "loading the XDP object into the kernel failed (needs root, or CAP_BPF with CAP_NET_ADMIN): {0}"
    )]
    Load(#[source] aya::EbpfError),
    #[error("the XDP object has no program {PROG_XDP:?}; was it built from this tree?")]
    MissingProgram,
    #[error(transparent)]
    Maps(#[from] MapsError),
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
    pub maps: Maps,
    events: Option<RingBuf<MapData>>,
    attachments: Vec<Attachment>,
}

impl XdpProgram {
    /// Loads the object embedded in this binary, maps not pinned (tests).
    pub fn load() -> Result<Self, LoaderError> {
        Self::load_with(OBJECT.ok_or(LoaderError::NotBuilt)?, None)
    }

    /// Loads the embedded object with its maps pinned in `pin_dir` (mounting
    /// bpffs if needed). Maps already pinned there are reused, so a restarted
    /// daemon continues from what the kernel recorded meanwhile.
    pub fn load_pinned(pin_dir: &Path) -> Result<Self, LoaderError> {
        Self::load_with(OBJECT.ok_or(LoaderError::NotBuilt)?, Some(pin_dir))
    }

    /// Loads an object from bytes (8-byte aligned) and verifies the program.
    pub fn load_with(bytes: &[u8], pin_dir: Option<&Path>) -> Result<Self, LoaderError> {
        let mut loader = EbpfLoader::new();
        if let Some(dir) = pin_dir {
            pin::prepare(dir).map_err(LoaderError::Pin)?;
            for name in ALL_MAPS {
                loader.map_pin_path(name, Cow::Owned(pin::map_path(dir, name)));
            }
        }
        let mut ebpf = loader.load(bytes).map_err(LoaderError::Load)?;
        program_mut(&mut ebpf)?
            .load()
            .map_err(LoaderError::Verify)?;
        let maps = Maps::take(&mut ebpf)?;
        let events = ebpf
            .take_map(MAP_EVENTS)
            .and_then(|m| RingBuf::try_from(m).ok());
        Ok(Self {
            ebpf,
            maps,
            events,
            attachments: Vec::new(),
        })
    }

    /// Attaches to `interface`, in driver mode where the driver supports it and
    /// in generic mode otherwise.
    pub fn attach(&mut self, interface: &str) -> Result<&Attachment, LoaderError> {
        let ifindex = crate::net::iface::index(interface)
            .map_err(|_| LoaderError::NoInterface(interface.into()))?;
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

    /// The ring buffer of kernel events, for one reader.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Runs the program `repeat` times over `frame` with BPF_PROG_TEST_RUN
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

    /// Every advert entry the program has recorded.
    pub fn adverts(&self) -> Result<Vec<super::adverts::AdvertEntry>, LoaderError> {
        Ok(self.maps.adverts()?)
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoaderError> {
    ebpf.program_mut(PROG_XDP)
        .ok_or(LoaderError::MissingProgram)?
        .try_into()
        .map_err(|_| LoaderError::MissingProgram)
}
