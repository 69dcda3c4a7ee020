//! Links hatchery's binaries with 2 MiB segment alignment: the kernel then loads them at
//! a 2 MiB-aligned base, and the daemon's code always holds a whole huge page, which
//! the daemon copies into an anonymous huge page that its sandboxes inherit mapped
//! (`sys::copy_own_code_to_huge_pages`). The file does not grow: only the segments'
//! alignment changes, not their layout in the file.
//!
//! Runs in Cargo, at build time, and in none of hatchery's processes. It sits at the
//! repository root, where Cargo and every reader look for a build script (no `build =`
//! line in `Cargo.toml`). Only the binaries get the argument (`-bins`): the library is
//! linked into whatever program uses it, which chooses its own alignment (a custom
//! zygote's binary needs the same argument to get the huge page).
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,max-page-size=0x200000");
}
