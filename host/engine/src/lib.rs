//! tritlab engine
