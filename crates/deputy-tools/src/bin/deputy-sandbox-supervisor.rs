//! The supervisor of a kept sandbox as a program of its own, for programs that embed deputy's
//! tools without being deputy (and for this crate's tests). `deputy` serves it itself.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(deputy_tools::sandbox::supervisor::serve().clamp(0, 255) as u8)
}
