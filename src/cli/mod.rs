//! The command line (clap). Only commands that work are here.

use std::ffi::OsStr;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use knetdoctor::lab::{DEFAULT_NAME, Fault, IptablesBackend};

pub mod complete;
pub mod values;

/// How the binary was called: as itself, as a kubectl plugin (installed
/// or linked as `kubectl-knetdoctor`, run as `kubectl knetdoctor`), or as
/// kubectl's completer of that plugin (`kubectl_complete-knetdoctor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invoked {
    Knetdoctor,
    KubectlPlugin,
    KubectlComplete,
}

impl Invoked {
    /// From the program's name (`argv[0]`).
    pub fn from_program(argv0: Option<&OsStr>) -> Invoked {
        let name = argv0
            .map(std::path::Path::new)
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match name.as_str() {
            "kubectl-knetdoctor" => Invoked::KubectlPlugin,
            "kubectl_complete-knetdoctor" => Invoked::KubectlComplete,
            _ => Invoked::Knetdoctor,
        }
    }

    /// The command line, its usage and help named as it was called.
    pub fn command(self) -> clap::Command {
        let cmd = Cli::command();
        match self {
            Invoked::Knetdoctor => cmd,
            Invoked::KubectlPlugin | Invoked::KubectlComplete => cmd
                .bin_name("kubectl knetdoctor")
                .display_name("kubectl knetdoctor"),
        }
    }
}

/// Diagnose and repair Kubernetes networking on flannel (VXLAN) + kube-proxy clusters.
#[derive(Debug, Parser)]
#[command(name = "knetdoctor", version, about, propagate_version = true)]
pub struct Cli {
    /// Without a command: the dashboard (`tui`) on the lab.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Readable text (NO_COLOR respected).
    #[default]
    Text,
    /// JSON with a stable schema.
    Json,
    /// The same document as YAML.
    Yaml,
    /// Text with every field in a column where the command prints a list
    /// of findings or steps (check: one line a finding; repair's plan: one
    /// line a step); elsewhere the text.
    Wide,
}

impl Output {
    /// Whether people read it (text or wide) rather than programs.
    pub fn is_text(self) -> bool {
        matches!(self, Output::Text | Output::Wide)
    }
}

/// Output format of a command that prints as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LineOutput {
    /// Readable text, a line per frame (NO_COLOR respected).
    #[default]
    Text,
    /// One JSON object per line, as each comes.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The live dashboard: nodes and findings; each node's flannel entries and kube-proxy tree against what they would program, and its repair (also what `knetdoctor` alone opens).
    Tui(TuiArgs),
    /// Every broken link between what the API says and what the nodes do, with the evidence.
    Check(CheckArgs),
    /// Capture on several interfaces of a node at once (default cni0, flannel.1, eth0), VXLAN decoded.
    Capture(CaptureArgs),
    /// The path from SRC to DST hop by hop, with the entry that carries or drops the packet at each hop.
    Trace(TraceArgs),
    /// The packets the kernel drops, live: where, why (the kernel's own reason) and which function freed each, counted by reason at the end.
    Drops(DropsArgs),
    /// Put a node's dataplane back the way flannel meant it: the plan (typed actions, each with the finding it fixes and what it replaces), then with --apply through rtnetlink, journaled and undoable.
    Repair(RepairArgs),
    /// Write an offline bundle (cluster objects, node states, raw iptables-save) that --bundle reads.
    Collect(CollectArgs),
    /// Show what is there: a node's dataplane as the kernel holds it.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Print the knetdoctor-reader role (list and watch on exactly what knetdoctor reads; Secrets never) and, with --user/--group/--serviceaccount, its bindings, for `kubectl apply -f -`.
    Rbac(RbacArgs),
    /// The node agent (a DaemonSet's pod on every node) that lets every command reach every node through the API server; `agent manifest` prints what installs it.
    Agent(AgentArgs),
    /// The seed cluster built for real in network namespaces: up, status, break, heal, down.
    #[command(subcommand)]
    Lab(LabCommand),
    /// Print the shell's completion script (`source <(knetdoctor completion bash)`): commands, flags, fault names, and the nodes, pods and Services of the labs that are up.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write a man page for every command (knetdoctor.1, knetdoctor-check.1, ...) into a directory.
    Man {
        /// Where (e.g. /usr/local/share/man/man1).
        #[arg(long, default_value = ".")]
        out: std::path::PathBuf,
    },
    /// Internal: the control-plane lab's forwarder from 127.0.0.1 to its API server.
    #[command(hide = true)]
    LabForward {
        #[arg(long)]
        netns: String,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        port_file: std::path::PathBuf,
    },
    /// Internal: the control-plane lab's stand-in kubelets (leases, node and pod status).
    #[command(hide = true)]
    LabKubelets {
        #[arg(long, value_parser = values::lab_name)]
        name: String,
    },
    /// Internal: the HTTP responder the lab runs in each nginx pod.
    #[command(hide = true)]
    LabResponder {
        #[arg(long)]
        name: String,
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

/// A shell completion is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// The packets of which protocol `drops` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DropProtocol {
    Ipv4,
    Ipv6,
    Arp,
    /// Every protocol.
    Any,
}

/// A live cluster, its nodes reached through their knetdoctor agents.
#[derive(Debug, Args)]
pub struct LiveArgs {
    /// Read the cluster live from the API server in this kubeconfig.
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (reads the cluster live).
    #[arg(long)]
    pub context: Option<String>,
    /// The kubeconfig cluster to use instead of the context's (reads the cluster live).
    #[arg(long)]
    pub cluster: Option<String>,
    /// The kubeconfig user to use instead of the context's (reads the cluster live).
    #[arg(long)]
    pub user: Option<String>,
    /// The namespace the knetdoctor agent runs in (live clusters: nodes are reached through their agents).
    #[arg(long, env = "KNETDOCTOR_AGENT_NAMESPACE", default_value = knetdoctor::agent::api::DEFAULT_NAMESPACE)]
    pub agent_namespace: String,
}

impl LiveArgs {
    /// The live source, when --kubeconfig, --context, --cluster or --user
    /// asks for one.
    pub fn source(&self) -> Option<knetdoctor::inspect::live::LiveSource> {
        let named = self.kubeconfig.is_some()
            || self.context.is_some()
            || self.cluster.is_some()
            || self.user.is_some();
        named.then(|| knetdoctor::inspect::live::LiveSource {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: None,
            namespace_if_refused: None,
            agent_namespace: Some(self.agent_namespace.clone()),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct DropsArgs {
    /// Only this node's drops: a lab node's (its namespace and its pods'),
    /// this machine's when NODE is its host name, or through its agent
    /// with --kubeconfig; omit for every drop on this machine (a lab's
    /// nodes named where they are).
    #[arg(add = complete::nodes())]
    pub node: Option<String>,
    /// The lab whose node NODE names.
    #[arg(long, default_value = DEFAULT_NAME, value_parser = values::lab_name)]
    pub lab: String,
    /// Only packets this tcpdump filter matches (on the dropped packet's
    /// headers, e.g. `icmp and host 10.2.0.42`).
    #[arg(short = 'f', long)]
    pub filter: Option<String>,
    /// A live cluster's node, watched by its knetdoctor agent (a bounded
    /// watch: --duration, at most 300 s).
    #[command(flatten)]
    pub agents: LiveArgs,
    /// How long to watch.
    #[arg(long, default_value = "10", value_parser = values::seconds)]
    pub duration: std::time::Duration,
    /// Which packets.
    #[arg(long, value_enum, default_value = "ipv4")]
    pub protocol: DropProtocol,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// How often everything is read again, in milliseconds (a lab node's
    /// link, address, route, neighbour and FDB changes are read at once).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..))]
    pub refresh_ms: u64,
    /// Only this namespace's Pods, Services, DNS names and Ingresses, and
    /// no finding about another namespace's objects (as kubectl's -n; the
    /// nodes and their dataplane stay).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace (the default; as kubectl's -A).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

/// Where the cluster comes from.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Read an offline bundle written by `knetdoctor collect`.
    #[arg(long)]
    pub bundle: Option<std::path::PathBuf>,
    /// The lab to read when no --bundle is given (and whose nodes a live check reads).
    #[arg(long, default_value = DEFAULT_NAME, value_parser = values::lab_name)]
    pub lab: String,
    #[command(flatten)]
    pub live: LiveArgs,
}

impl SourceArgs {
    /// The live source, when --kubeconfig or --context asks for one.
    pub fn live(&self) -> Option<knetdoctor::inspect::live::LiveSource> {
        self.live.source()
    }

    /// The namespace for names given without one: `namespace` (-n), else
    /// the live cluster's context's (as kubectl), else `default`.
    pub fn namespace(&self, namespace: &Option<String>) -> String {
        namespace
            .clone()
            .or_else(|| self.live().and_then(|l| l.context_namespace()))
            .unwrap_or_else(|| "default".to_string())
    }
}

/// `knetdoctor rbac`: the reader role and its bindings.
#[derive(Debug, Args)]
pub struct RbacArgs {
    /// Bind the role to this user (as the API server names it: a certificate's CN, a token's user).
    #[arg(long, group = "grantee")]
    pub user: Option<String>,
    /// Bind the role to this group.
    #[arg(long, group = "grantee")]
    pub group: Option<String>,
    /// Bind the role to this ServiceAccount, NAMESPACE:NAME.
    #[arg(long, group = "grantee", value_name = "NAMESPACE:NAME")]
    pub serviceaccount: Option<String>,
    /// Bind in this namespace only (its Pods, Services, endpoints, Ingresses, NetworkPolicies): every answer then says what else it could not read.
    #[arg(short = 'n', long, requires = "grantee")]
    pub namespace: Option<String>,
}

/// `knetdoctor agent`: run the agent on this node, or print its manifest.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    /// The node this agent answers for (the DaemonSet sets it from spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
    /// The namespace of the agent's requests (the DaemonSet's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = knetdoctor::agent::api::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The agent's pod, as its NodeAgent names it.
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod: String,
    /// The API server's kubeconfig (default: the pod's ServiceAccount, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<std::path::PathBuf>,
    #[arg(long)]
    pub context: Option<String>,
    /// How often the agent renews its NodeAgent, in seconds (clients call it gone after three missed).
    #[arg(long, default_value = "2", value_parser = values::seconds)]
    pub heartbeat: std::time::Duration,
    /// A pod network namespace to read (repeatable; default: containerd's cni-* under /run/netns).
    #[arg(long = "pod-netns")]
    pub pod_netns: Vec<String>,
    /// Where repair journals are kept on the node (the DaemonSet mounts it from the host).
    #[arg(long, env = "KNETDOCTOR_STATE_DIR", default_value = knetdoctor::agent::manifest::STATE_DIR)]
    pub state_dir: std::path::PathBuf,
    /// How often the state published for the dashboard is read again without a kernel notification, in seconds (iptables sends none).
    #[arg(long, default_value = "10", value_parser = values::seconds)]
    pub publish_every: std::time::Duration,
    /// Requests older than this many seconds are deleted with their payloads.
    #[arg(long, default_value = "600", value_parser = values::seconds)]
    pub ttl: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Print the CRDs, RBAC (the agent's Role; knetdoctor-viewer and knetdoctor-repairer ClusterRoles) and DaemonSet, for `kubectl apply -f -`.
    Manifest {
        /// The agent's image (built from the Containerfile).
        #[arg(long, default_value = "ghcr.io/knetdoctor/knetdoctor:0.1.0")]
        image: String,
        /// The namespace to install it in.
        #[arg(long, default_value = knetdoctor::agent::api::DEFAULT_NAMESPACE)]
        namespace: String,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Check only this node's dataplane (cluster-level findings are always reported).
    #[arg(long, add = complete::nodes())]
    pub node: Option<String>,
    /// Only the findings that name an object of this namespace (as
    /// kubectl's -n); the rest are counted.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Every namespace's findings (the default; as kubectl's -A).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Lab nodes (e.g. k8s-node-12, or k8s-node-12,k8s-master-10 to follow
    /// packets from node to node); omit to capture in the current namespace.
    #[arg(value_delimiter = ',', add = complete::nodes())]
    pub nodes: Vec<String>,
    /// Capture in this network namespace (name or path) instead.
    #[arg(long, conflicts_with_all = ["kubeconfig", "context"])]
    pub netns: Option<String>,
    /// The lab whose node NODE names.
    #[arg(long, default_value = DEFAULT_NAME, value_parser = values::lab_name)]
    pub lab: String,
    /// A live cluster's nodes, captured by their knetdoctor agents (a
    /// bounded capture: -c and --duration, at most 300 s).
    #[command(flatten)]
    pub agents: LiveArgs,
    /// Interfaces, comma-separated.
    #[arg(short = 'i', long, value_delimiter = ',', default_values_t = ["cni0".to_string(), "flannel.1".to_string(), "eth0".to_string()])]
    pub interfaces: Vec<String>,
    /// A BPF filter, as tcpdump takes it.
    #[arg(short = 'f', long)]
    pub filter: Option<String>,
    /// Only traffic of this pod (ns/name): its IP, also inside VXLAN on the underlay.
    #[arg(long, conflicts_with = "svc")]
    pub pod: Option<String>,
    /// Only traffic of this Service (ns/name): its ClusterIP and every endpoint, also inside VXLAN.
    #[arg(long)]
    pub svc: Option<String>,
    /// Bytes kept of each frame.
    #[arg(short = 's', long, default_value_t = 262144, value_parser = values::snaplen)]
    pub snaplen: i32,
    /// Stop after this many frames.
    #[arg(short = 'c', long, value_parser = values::count)]
    pub count: Option<usize>,
    /// Stop after this many seconds (default 10 when no --count is given).
    #[arg(long, value_parser = values::seconds)]
    pub duration: Option<std::time::Duration>,
    /// Follow each packet across the interfaces: print the groups (the same
    /// packet on cni0, flannel.1, inside VXLAN on eth0) with the time between hops.
    #[arg(long)]
    pub group: bool,
    /// Flag a DNS query that got no answer within this many seconds.
    #[arg(long, default_value = "2", value_parser = values::seconds)]
    pub dns_timeout: std::time::Duration,
    /// Also write every frame to this pcapng file (one interface block per interface).
    #[arg(short = 'w', long)]
    pub write: Option<std::path::PathBuf>,
    /// Read a pcap or pcapng file instead of capturing live (same decoding and --group).
    #[arg(long, conflicts_with_all = ["nodes", "netns", "write", "count", "duration", "filter", "kubeconfig", "context"])]
    pub read: Option<std::path::PathBuf>,
    /// UDP ports decoded as VXLAN.
    #[arg(long, value_delimiter = ',', default_values_t = [8472u16, 4789], value_parser = values::port)]
    pub vxlan_ports: Vec<u16>,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: LineOutput,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Where from: a pod (ns/name, or name with -n), a pod IP, or an outside address.
    #[arg(add = complete::endpoints())]
    pub src: String,
    /// Where to: a pod, pod IP, Service (ns/name[:port]), DNS name, node:nodePort, http://host/path, or an address.
    #[arg(add = complete::endpoints())]
    pub dst: String,
    /// The namespace for bare names (and of the asking pod for DNS names);
    /// default: the kubeconfig context's namespace when reading a live
    /// cluster, else `default`.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The destination port (a Service's port defaults to its first).
    #[arg(long, value_parser = values::port)]
    pub port: Option<u16>,
    /// The protocol the trace follows (and a probe sends).
    #[arg(long, default_value = "tcp", value_parser = values::proto())]
    pub proto: knetdoctor::trace::Proto,
    /// Also send a real packet from the source's namespace, capture it on
    /// every interface of the path (both nodes), trace it through netfilter,
    /// and say where it was last seen and whether a reply came back.
    #[arg(long)]
    pub probe: bool,
    /// Seconds to wait for the probe's reply.
    #[arg(long, default_value = "1", value_parser = values::seconds, requires = "probe")]
    pub timeout: std::time::Duration,
    /// IP size of an ICMP/UDP probe, sent with DF set (default for ICMP:
    /// the source interface's MTU, so a smaller MTU on the path shows).
    #[arg(long, requires = "probe", value_parser = values::probe_size)]
    pub size: Option<usize>,
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The node to plan for (e.g. k8s-node-12).
    #[arg(long, add = complete::nodes())]
    pub node: String,
    /// Only these kinds of action (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = values::category())]
    pub only: Vec<knetdoctor::repair::Category>,
    /// Also restore kube-proxy's chains (kube-proxy rewrites them on its next sync anyway).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub include: Vec<RepairInclude>,
    /// Carry the plan out (through rtnetlink, journaled); asks first on a terminal.
    #[arg(long, conflicts_with_all = ["undo", "history"])]
    pub apply: bool,
    /// Do not ask before applying.
    #[arg(long, requires = "apply")]
    pub yes: bool,
    /// Put back what repair ID changed (IDs from --history).
    #[arg(long, conflicts_with = "history", value_parser = values::repair_id)]
    pub undo: Option<String>,
    /// List the node's past repairs.
    #[arg(long)]
    pub history: bool,
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// Owners whose state `repair` leaves alone unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RepairInclude {
    KubeProxy,
}

#[derive(Debug, Args)]
pub struct CollectArgs {
    /// The lab to collect from.
    #[arg(long, default_value = DEFAULT_NAME, value_parser = values::lab_name)]
    pub lab: String,
    /// The bundle to write: a directory, or FILE.tar.gz (must not exist yet).
    #[arg(short = 'o', long = "output")]
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// A node's links, addresses, routes, rules, neighbours, FDB and sysctls, read over rtnetlink.
    Node(InspectNodeArgs),
    /// A pod: its node, veth, the overlay entries that reach it, the Services that select it.
    Pod(InspectObjectArgs),
    /// A Service: DNS name, ports, kube-proxy chains per node, endpoints, pods, nodes.
    Svc(InspectObjectArgs),
    /// An Ingress: class and controller, rules, backend Services and everything below them.
    Ingress(InspectObjectArgs),
    /// A DNS name resolved as a pod in -n NAMESPACE would (search list, ndots:5), and what it leads to.
    Dns(InspectObjectArgs),
}

#[derive(Debug, Args)]
pub struct InspectObjectArgs {
    /// `name` or `namespace/name` (for dns: the name to resolve).
    pub name: String,
    /// The namespace (for dns: the namespace of the asking pod); default:
    /// the kubeconfig context's namespace when reading a live cluster, else
    /// `default`.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct InspectNodeArgs {
    /// A node of the lab (e.g. k8s-node-12); omit to read the current namespace.
    #[arg(add = complete::nodes())]
    pub node: Option<String>,
    /// Read this network namespace instead: a name under /run/netns, or a
    /// path such as /proc/PID/ns/net.
    #[arg(long)]
    pub netns: Option<String>,
    /// Where NODE is: a lab (--lab), a bundle written by `collect`
    /// (--bundle), or a live cluster (--kubeconfig/--context: this host, or
    /// the node's agent).
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct LabName {
    /// The lab's name: its namespaces are kdlab-NAME-*.
    #[arg(long, default_value = DEFAULT_NAME, value_parser = values::lab_name)]
    pub name: String,
}

/// What `lab agent` does.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LabAgentAction {
    Start,
    Stop,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab: nodes, pods, flannel, kube-proxy rules, DNS, ingress; print where its objects are.
    Up {
        #[command(flatten)]
        name: LabName,
        /// Number of nodes (the first is k8s-master-10).
        #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(3..=knetdoctor::lab::topology::MAX_NODES as u64))]
        nodes: usize,
        /// Replicas of the nginx Deployment per node.
        #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=knetdoctor::lab::topology::MAX_PODS_PER_NODE as u64))]
        pods_per_node: usize,
        /// Which iptables the nodes use.
        #[arg(long, default_value = "nft", value_parser = values::iptables_backend())]
        iptables: IptablesBackend,
        /// Also publish the lab's objects to the API server in this kubeconfig
        /// (and keep them in step on break/heal), so commands can run live with --kubeconfig.
        #[arg(long, conflicts_with = "control_plane")]
        kubeconfig: Option<std::path::PathBuf>,
        /// Run the real control plane (etcd, kube-apiserver, kube-controller-manager
        /// on k8s-master-10, RBAC and the default admission plugins) and the real
        /// kube-proxy on every node, instead of rendering kube-proxy's rules.
        #[arg(long)]
        control_plane: bool,
        /// The Kubernetes version of --control-plane (built once, offline:
        /// scripts/build-apiserver.sh for 1.20, scripts/build-k8s-1.32.sh for 1.32).
        #[arg(long, default_value = "1.20", requires = "control_plane", value_parser = values::k8s_version())]
        k8s: knetdoctor::lab::control_plane::K8sVersion,
        /// How kube-proxy programs the nodes: the lab renders that mode's
        /// rules (iptables chains, or nftables' table ip kube-proxy), or the
        /// real kube-proxy of --control-plane runs in it (nftables needs --k8s 1.32).
        #[arg(long, default_value = "iptables", value_parser = values::kube_proxy_mode())]
        kube_proxy_mode: knetdoctor::lab::control_plane::KubeProxyMode,
        /// Run kube-controller-manager of --control-plane without its
        /// Endpoints controllers (`--controllers=*,-endpoint,-endpointslicemirroring`):
        /// a cluster with EndpointSlices and no v1 Endpoints.
        #[arg(long, requires = "control_plane")]
        without_endpoints: bool,
        /// flannel in nftables mode (`"EnableNFTables": true` in net-conf.json):
        /// its rules are `table ip flannel-ipv4`, not FLANNEL-* iptables chains.
        #[arg(long)]
        flannel_nftables: bool,
        /// Also install the knetdoctor agent (`agent manifest` applied to the
        /// API server) and run one agent per node, as its DaemonSet's pods would.
        #[arg(long, requires = "control_plane")]
        agents: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Stop or start the knetdoctor agent on one node of a lab run with --agents.
    Agent {
        #[command(flatten)]
        name: LabName,
        #[arg(value_enum)]
        action: LabAgentAction,
        /// The node.
        #[arg(long, add = complete::nodes())]
        node: String,
    },
    /// What exists, what runs, which faults are injected, and whether each path works.
    Status {
        #[command(flatten)]
        name: LabName,
        /// Skip the path probes (ping, curl, dig).
        #[arg(long)]
        no_probe: bool,
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Remove everything the lab made (also after a crash), and nothing else.
    Down {
        #[command(flatten)]
        name: LabName,
    },
    /// Inject one fault (see --list).
    Break {
        #[command(flatten)]
        name: LabName,
        /// The fault to inject.
        #[arg(required_unless_present = "list", value_parser = values::fault())]
        fault: Option<Fault>,
        /// The node to break (default k8s-node-12).
        #[arg(long, add = complete::nodes())]
        node: Option<String>,
        /// For per-peer faults: the remote node (default: the next node).
        #[arg(long, add = complete::nodes())]
        peer: Option<String>,
        /// Describe every fault in one line and exit.
        #[arg(long)]
        list: bool,
    },
    /// Undo every injected fault.
    Heal {
        #[command(flatten)]
        name: LabName,
    },
    /// A guided first fault on a lab that is up: break a route, see it in
    /// check and trace, repair it (plan, apply), undo the repair, heal —
    /// each command printed before it runs (on a terminal, Enter runs it).
    Tour {
        #[command(flatten)]
        name: LabName,
    },
}

#[cfg(test)]
mod tests {
    /// The k9s plugins (deploy/k9s/plugins.yaml) call knetdoctor through
    /// kubectl with arguments this command line accepts, once k9s has put
    /// in the selected object's namespace, name and context; each has a
    /// shortcut, a description and the scopes it applies to.
    #[test]
    fn the_k9s_plugins_run_commands_that_parse() {
        use clap::Parser;
        let text = include_str!("../../deploy/k9s/plugins.yaml");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        let plugins = doc["plugins"].as_mapping().unwrap();
        assert!(plugins.len() >= 4);
        let mut scopes = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for (name, p) in plugins {
            assert_eq!(p["command"].as_str(), Some("kubectl"), "{name:?}");
            assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()));
            let key = p["shortCut"].as_str().unwrap();
            let args: Vec<String> = p["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| {
                    a.as_str()
                        .unwrap()
                        .replace("$NAMESPACE", "test-net")
                        .replace("$NAME", "busybox")
                        .replace("$CONTEXT", "kind-dev")
                })
                .collect();
            assert_eq!(args[0], "knetdoctor", "{name:?}");
            let parsed = super::Cli::try_parse_from(&args);
            assert!(parsed.is_ok(), "{name:?}: {args:?}: {:?}", parsed.err());
            for scope in p["scopes"].as_sequence().unwrap() {
                let scope = scope.as_str().unwrap().to_string();
                // One shortcut means one plugin within a scope.
                assert!(keys.insert((scope.clone(), key.to_string())), "{name:?}");
                scopes.insert(scope);
            }
        }
        assert_eq!(
            scopes.into_iter().collect::<Vec<_>>(),
            ["nodes", "pods", "services"]
        );
    }

    /// clap checks its argument definitions only when a command is built;
    /// a dangling name in `conflicts_with` would panic at run time.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    /// Every flag that takes a number (found from the definition, so a new
    /// one is covered without being listed) fed arbitrary text: clap never
    /// panics, and whatever it accepts is what the commands can use.
    mod numeric_flags {
        use clap::CommandFactory;
        use proptest::prelude::*;

        /// (subcommand path, required arguments, numeric flag) for every
        /// numeric flag of every command.
        fn numeric_flags() -> Vec<(Vec<String>, Vec<String>, String)> {
            fn walk(
                cmd: &clap::Command,
                path: Vec<String>,
                out: &mut Vec<(Vec<String>, Vec<String>, String)>,
            ) {
                let text = [
                    clap::builder::ValueParser::string().type_id(),
                    clap::builder::ValueParser::path_buf().type_id(),
                    clap::builder::ValueParser::os_string().type_id(),
                    clap::builder::ValueParser::bool().type_id(),
                ];
                let mut required = Vec::new();
                for a in cmd.get_arguments().filter(|a| a.is_required_set()) {
                    match a.get_long() {
                        Some(l) => required.extend([format!("--{l}"), "x".to_string()]),
                        None => required.push("x".to_string()),
                    }
                }
                for a in cmd.get_arguments() {
                    let numeric = a.get_action().takes_values()
                        && a.get_possible_values().is_empty()
                        && !text.contains(&a.get_value_parser().type_id());
                    if let (true, Some(long)) = (numeric, a.get_long()) {
                        out.push((path.clone(), required.clone(), long.to_string()));
                    }
                }
                for sub in cmd.get_subcommands() {
                    let mut p = path.clone();
                    p.push(sub.get_name().to_string());
                    walk(sub, p, out);
                }
            }
            let mut out = Vec::new();
            walk(&super::super::Cli::command(), Vec::new(), &mut out);
            out
        }

        #[test]
        fn the_numeric_flags_are_found() {
            let flags: Vec<String> = numeric_flags().into_iter().map(|(_, _, f)| f).collect();
            for f in [
                "duration",
                "dns-timeout",
                "snaplen",
                "count",
                "vxlan-ports",
                "size",
                "timeout",
                "port",
                "refresh-ms",
                "nodes",
                "pods-per-node",
            ] {
                assert!(
                    flags.iter().any(|x| x == f),
                    "--{f} not found among {flags:?}"
                );
            }
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<f64>().prop_map(|v| v.to_string()),
                any::<i64>().prop_map(|v| v.to_string()),
                any::<u64>().prop_map(|v| v.to_string()),
                Just("NaN".to_string()),
                Just("inf".to_string()),
                Just("-inf".to_string()),
                Just("1e300".to_string()),
                "[-+0-9.eE]{0,24}",
                ".{0,12}",
            ]
        }

        proptest! {
            #[test]
            fn arbitrary_values_never_panic(v in value()) {
                for (path, required, flag) in numeric_flags() {
                    let mut args = vec!["knetdoctor".to_string()];
                    args.extend(path.iter().cloned());
                    args.extend(required.iter().cloned());
                    if flag == "size" || flag == "timeout" {
                        args.push("--probe".into());
                    }
                    args.push(format!("--{flag}={v}"));
                    match <super::super::Cli as clap::Parser>::try_parse_from(&args) {
                        Ok(cli) => check_accepted(&cli),
                        Err(e) => prop_assert!(e.exit_code() == 2, "{args:?}: {e}"),
                    }
                }
            }
        }

        /// What was accepted is within what the commands can use.
        fn check_accepted(cli: &super::super::Cli) {
            use super::super::Command;
            let day = std::time::Duration::from_secs(86_400);
            match &cli.command {
                Some(Command::Capture(a)) => {
                    assert!(a.duration.is_none_or(|d| !d.is_zero() && d <= day));
                    assert!(!a.dns_timeout.is_zero() && a.dns_timeout <= day);
                    assert!((1..=262_144).contains(&a.snaplen));
                    assert!(a.count.is_none_or(|c| c > 0));
                    assert!(a.vxlan_ports.iter().all(|p| *p > 0));
                }
                Some(Command::Trace(a)) => {
                    assert!(!a.timeout.is_zero() && a.timeout <= day);
                    assert!(
                        a.size
                            .is_none_or(|s| super::super::values::PROBE_SIZES.contains(&s))
                    );
                    assert!(a.port.is_none_or(|p| p > 0));
                }
                _ => {}
            }
        }
    }
}
