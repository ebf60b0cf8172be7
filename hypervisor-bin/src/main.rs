//! The Tessel EL2 hypervisor image (skeleton; see issue 6).
#![no_std]
#![no_main]

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
