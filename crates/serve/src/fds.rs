//! The process's file descriptors, shared by the management API, the resource store and
//! every in-process cache: at start the soft `RLIMIT_NOFILE` is raised to the hard one,
//! [`FD_RESERVE`] descriptors are kept back for the API, the store, persistence files and
//! TLS, and the caches' client connections together get the rest
//! (`node::set_client_fd_budget`). A cache whose clients would go beyond that refuses them
//! with `ERR max number of clients reached`, as over `maxclients`, instead of accept
//! failing with EMFILE for every cache and the API's store writes failing with it.

/// Descriptors no cache's clients may take: the API's listener and connections, the
/// resource store's and ledgers' writes, each cache's listeners, AOF and RDB files,
/// storage uploads.
pub const FD_RESERVE: u64 = 1024;

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    let Some(max) = limit.maximum else {
        return current;
    };
    if current >= max {
        return current;
    }
    let raised = Rlimit {
        current: Some(max),
        maximum: Some(max),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => max,
        Err(e) => {
            tracing::warn!(error = %e, current, max, "could not raise the open files limit");
            current
        }
    }
}

/// Sets the caches' share of descriptors from the limit in force, and warns when the
/// caches' `maxclients` together do not fit in it (their clients are then refused before
/// the process runs out, not after).
pub fn share(nofile: u64, maxclients_total: u64) {
    let budget = nofile.saturating_sub(FD_RESERVE);
    node::set_client_fd_budget(usize::try_from(budget).unwrap_or(usize::MAX));
    if maxclients_total > budget {
        tracing::warn!(
            nofile,
            reserve = FD_RESERVE,
            maxclients_total,
            "the caches' maxclients together exceed the open files limit less the reserve: \
             past {budget} client connections in all, caches refuse new ones with \
             'max number of clients reached'"
        );
    } else {
        tracing::info!(
            nofile,
            budget,
            maxclients_total,
            "file descriptors for client connections"
        );
    }
}
