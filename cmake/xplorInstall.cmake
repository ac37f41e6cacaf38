# Install rules: headers, exported targets and a package config with a version file, so that
# another project writes find_package(xplor CONFIG REQUIRED) and links xplor::xplor.
include(CMakePackageConfigHelpers)

set(XPLOR_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/xplor" CACHE STRING
    "Where the xplor package config is installed")

install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS xplor EXPORT xplorTargets)
install(EXPORT xplorTargets NAMESPACE xplor:: DESTINATION ${XPLOR_INSTALL_CMAKEDIR})
foreach(dep eigen xtensor json mpi)
  if(TARGET xplor_${dep})
    install(TARGETS xplor_${dep} EXPORT xplor_${dep}Targets)
    install(EXPORT xplor_${dep}Targets NAMESPACE xplor:: DESTINATION ${XPLOR_INSTALL_CMAKEDIR})
  endif()
endforeach()

configure_package_config_file(cmake/xplorConfig.cmake.in
  ${PROJECT_BINARY_DIR}/xplorConfig.cmake
  INSTALL_DESTINATION ${XPLOR_INSTALL_CMAKEDIR})
# Header-only: the package fits any architecture (ARCH_INDEPENDENT).
write_basic_package_version_file(${PROJECT_BINARY_DIR}/xplorConfigVersion.cmake
  COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/xplorConfig.cmake ${PROJECT_BINARY_DIR}/xplorConfigVersion.cmake
              cmake/xplorThrust.cmake cmake/xplorOptimize.cmake
        DESTINATION ${XPLOR_INSTALL_CMAKEDIR})
