//! Loads the XDP object into the kernel, pins its maps, attaches it to
//! interfaces.
use std::{borrow::Cow, fmt, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf},
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions,
        TestRunResult, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::{XdpLink, XdpLinkId},
    },
};
use ha_common::{ALL_MAPS, MAP_EVENTS, PROG_TC_EGRESS, PROG_XDP};

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
    /// A link an earlier daemon pinned, now running this program.
    Kept,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Driver => "driver",
            AttachMode::Generic => "generic",
            AttachMode::Kept => "kept (pinned by an earlier run)",
        })
    }
}

/// One interface the program is attached to. Unpinned: detached when the
/// program is dropped. Pinned: it stays attached after the daemon exits (the
/// fence holds), and a restarted daemon replaces it in place.
#[derive(Debug)]
pub struct Attachment {
    pub interface: String,
    pub ifindex: u32,
    pub mode: AttachMode,
    _link: Option<XdpLinkId>,
    /// The TC egress fence on the same interface, if it could be attached.
    pub egress: Option<String>,
}

/// The loaded XDP program and its maps.
pub struct XdpProgram {
    ebpf: Ebpf,
    pub maps: Maps,
    events: Option<RingBuf<MapData>>,
    attachments: Vec<Attachment>,
    /// Where links are pinned (none for a test load).
    pin_dir: Option<std::path::PathBuf>,
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
        let tc: &mut SchedClassifier = ebpf
            .program_mut(PROG_TC_EGRESS)
            .ok_or(LoaderError::MissingProgram)?
            .try_into()
            .map_err(|_| LoaderError::MissingProgram)?;
        tc.load().map_err(LoaderError::Verify)?;
        let maps = Maps::take(&mut ebpf)?;
        let events = ebpf
            .take_map(MAP_EVENTS)
            .and_then(|m| RingBuf::try_from(m).ok());
        Ok(Self {
            ebpf,
            maps,
            events,
            attachments: Vec::new(),
            pin_dir: pin_dir.map(Path::to_path_buf),
        })
    }

    /// Attaches to `interface`, in driver mode where the driver supports it and
    /// in generic mode otherwise; with a pin dir, the link is pinned (and a
    /// pinned one left by an earlier run is updated in place). Also attaches
    /// the TC egress fence there (best effort: without it the lease fence
    /// has only its XDP half, and the log says so).
    pub fn attach(&mut self, interface: &str) -> Result<&Attachment, LoaderError> {
        let ifindex = crate::net::iface::index(interface)
            .map_err(|_| LoaderError::NoInterface(interface.into()))?;
        let pin_dir = self.pin_dir.clone();
        let pinned = pin_dir
            .as_ref()
            .map(|d| d.join(format!("link_xdp_{interface}")));
        let prog = program_mut(&mut self.ebpf)?;
        // A link pinned by an earlier daemon: the new program goes in its place,
        // with no moment unguarded.
        let mut replaced = None;
        if let Some(path) = &pinned
            && let Ok(old) = PinnedLink::from_pin(path)
        {
            let fd: Option<FdLink> = old.unpin().ok();
            if let Some(fd) = fd
                && let Ok(link) = XdpLink::try_from(fd)
                && let Ok(id) = prog.attach_to_link(link)
            {
                replaced = Some(id);
            }
        }
        // On a veth, what the program sends back out (XDP_TX: the VIP
        // redirect, the resets) reaches the wire in driver mode only when the
        // peer end runs XDP or GRO (its NAPI): on a container or VM host's
        // bridge it does not, and those frames are dropped without a word.
        // Generic mode sends them through the device's normal transmit path.
        let generic_first = crate::net::iface::driver(interface).as_deref() == Some("veth");
        let (first, second) = if generic_first {
            (XdpMode::Skb, XdpMode::Driver)
        } else {
            (XdpMode::Driver, XdpMode::Skb)
        };
        let mode_of = |m: XdpMode| match m {
            XdpMode::Skb => AttachMode::Generic,
            _ => AttachMode::Driver,
        };
        let (id, mode) = match replaced {
            Some(id) => (id, AttachMode::Kept),
            None => match prog.attach_to_if_index(ifindex, first) {
                Ok(link) => (link, mode_of(first)),
                Err(e1) => match prog.attach_to_if_index(ifindex, second) {
                    Ok(link) => (link, mode_of(second)),
                    Err(e2) => {
                        let (driver, generic) = if generic_first { (e2, e1) } else { (e1, e2) };
                        return Err(LoaderError::Attach {
                            interface: interface.to_owned(),
                            driver: Box::new(driver),
                            generic: Box::new(generic),
                        });
                    }
                },
            },
        };
        if generic_first && mode == AttachMode::Generic {
            tracing::debug!(
                "XDP on {interface} (veth) in generic mode: what it sends back out reaches the peer whatever runs there"
            );
        }
        let link_id = match &pinned {
            Some(path) => {
                // Taken out of the program so that dropping it (the daemon
                // exiting) leaves it attached; pinned so it can be found.
                let link = prog.take_link(id).map_err(LoaderError::Verify)?;
                match FdLink::try_from(link) {
                    Ok(fd) => match fd.pin(path) {
                        Ok(_) => None,
                        Err(e) => {
                            tracing::warn!(
                                "pinning the XDP link of {interface} at {}: {e}; it is detached when the daemon exits",
                                path.display()
                            );
                            None
                        }
                    },
                    // A netlink attachment (old kernel): it stays until detached.
                    Err(_) => None,
                }
            }
            None => Some(id),
        };
        let egress = match self.attach_egress(interface) {
            Ok(how) => Some(how),
            Err(e) => {
                tracing::warn!(
                    "the TC egress fence on {interface} could not be attached: {e}; after a lease ends, replies already on their way out still leave"
                );
                None
            }
        };
        self.attachments.push(Attachment {
            interface: interface.to_owned(),
            ifindex,
            mode,
            _link: link_id,
            egress,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// The TC egress program on `interface` (tcx), pinned like the XDP link.
    fn attach_egress(&mut self, interface: &str) -> Result<String, ProgramError> {
        let pinned = self
            .pin_dir
            .as_ref()
            .map(|d| d.join(format!("link_tc_{interface}")));
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(PROG_TC_EGRESS)
            .ok_or(ProgramError::NotLoaded)?
            .try_into()?;
        let mut id = None;
        if let Some(path) = &pinned
            && let Ok(old) = PinnedLink::from_pin(path)
            && let Ok(fd) = old.unpin()
            && let Ok(link) = SchedClassifierLink::try_from(fd)
        {
            id = prog.attach_to_link(link).ok();
        }
        let kept = id.is_some();
        let id = match id {
            Some(id) => id,
            None => prog.attach_with_options(
                interface,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )?,
        };
        if let Some(path) = &pinned {
            let link = prog.take_link(id)?;
            if let Ok(fd) = FdLink::try_from(link)
                && let Err(e) = fd.pin(path)
            {
                tracing::warn!("pinning the TC link of {interface}: {e}");
            }
        }
        Ok(if kept { "tcx (kept)" } else { "tcx" }.into())
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

    /// One BPF_PROG_TEST_RUN of the XDP program over `frame`: its verdict and
    /// the frame as it left (rewritten by a reset or a redirect).
    pub fn test_run_frame(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), LoaderError> {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_XDP)
            .ok_or(LoaderError::MissingProgram)?
            .try_into()
            .map_err(|_| LoaderError::MissingProgram)?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .map_err(LoaderError::TestRun)?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
    }

    /// One BPF_PROG_TEST_RUN of the TC egress program over `frame`.
    pub fn test_run_egress(&self, frame: &[u8]) -> Result<u32, LoaderError> {
        let prog: &SchedClassifier = self
            .ebpf
            .program(PROG_TC_EGRESS)
            .ok_or(LoaderError::MissingProgram)?
            .try_into()
            .map_err(|_| LoaderError::MissingProgram)?;
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ..TestRunOptions::new()
        })
        .map(|r| r.return_value)
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
